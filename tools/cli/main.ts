import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import type { RenderServerOptions } from './actor-commands.ts';
import { describeError, exitCodeFor, ExitCode } from './cli-error.ts';
import type { CommandContext, CommandHandler } from './command-context.ts';
import type { BillsOptions } from './bills.ts';
import type { BudgetOptions } from './budget.ts';
import type { ContactSheetOptions } from './contact-sheet.ts';
import type { CredentialsOptions } from './credentials.ts';
import type { ClusterConfigOptions } from './cluster.ts';
import type { SiteOptions } from './site.ts';
import type { DemoOptions } from './demo.ts';
import type { FrameOptions } from './frame.ts';
import type { HostOptions } from './host.ts';
import { processIo, type Io } from './format.ts';
import { NOTIFIER_FLAG_HELP, type NotifierFlags } from './notifier.ts';
import { SCHEDULER_FLAG_HELP, type SchedulerFlags } from './scheduler-flags.ts';
import { MONITOR_FLAG_HELP, type MonitorFlags } from './monitor.ts';
import { collect } from './option-values.ts';
import { addSimFarmCommand } from './sim-farm.ts';
import type { RerenderOptions } from './rerender.ts';
import type { SubmitOptions } from './submit.ts';
import type { UpOptions } from './up.ts';

// The job schema's fields, written out so that `--help` does not load the schemas (a unit
// test holds them to protocol/messages/job-spec.ts)
export const JOB_FILE_FIELDS = 'name, scene, renderer, command, blender, progress, errors, sceneErrors, frames, chunk, taskDuration, memoryMb, maxAttempts, maxTaskErrors, maxHostFailures, stallLimit, timeLimit, resolution, priority, previewFirst, hold, limits, afterFrames, after, site, budget, encryptResults, rerenderOf, split, chain, user, group, project, notify, requirements, supportFiles, sandbox, env, output';
export const REQUIREMENT_FIELDS = 'machine, os, cpu, cpuCount, cpuMhz, ramMb, swapMb, packages, licenses, engines';

export type CommandName = 'up' | 'registry' | 'scheduler' | 'notifier' | 'monitor' | 'render-server' | 'submit' | 'jobs' | 'job' | 'cancel' | 'pause' | 'resume' | 'release' | 'retry' | 'rerender' | 'priority' | 'why' | 'contact-sheet' | 'limit' | 'share' | 'sick' | 'hosts' | 'host' | 'frame' | 'slot' | 'queue' | 'tail' | 'demo' | 'credentials' | 'sites' | 'site' | 'bills' | 'budget' | 'cluster' | 'leaders';
export type Handlers = Record<CommandName, CommandHandler>;

// Each command loads its module only when it runs: `--help` stays fast and needs no NATS.
export const defaultHandlers: Handlers = {
  up: async (c) => (await import('./up.ts')).upCommand(c as CommandContext<UpOptions>),
  registry: async (c) => (await import('./actor-commands.ts')).registryCommand(c),
  scheduler: async (c) => (await import('./actor-commands.ts')).schedulerCommand(c as CommandContext<SchedulerFlags>),
  notifier: async (c) => (await import('./actor-commands.ts')).notifierCommand(c as CommandContext<NotifierFlags>),
  monitor: async (c) => (await import('./monitor.ts')).monitorCommand(c as CommandContext<MonitorFlags>),
  'render-server': async (c) => (await import('./actor-commands.ts')).renderServerCommand(c as CommandContext<RenderServerOptions>),
  submit: async (c) => {
    // an Open Job Description template (YAML, or JSON that says so) becomes a job per step
    if (/\.(ya?ml|json)$/i.test(c.args[0] ?? '')) {
      const openjd = await import('./openjd-submit.ts');
      if (openjd.isTemplateArg(c.args, process.cwd())) return openjd.submitTemplateCommand(c as CommandContext<SubmitOptions>);
    }
    return (await import('./submit.ts')).submitCommand(c as CommandContext<SubmitOptions>);
  },
  jobs: async (c) => (await import('./jobs.ts')).jobsCommand(c),
  job: async (c) => (await import('./job.ts')).jobCommand(c),
  cancel: async (c) => (await import('./control.ts')).controlCommand('cancel', c),
  pause: async (c) => (await import('./control.ts')).controlCommand('pause', c),
  resume: async (c) => (await import('./control.ts')).controlCommand('resume', c),
  release: async (c) => (await import('./control.ts')).controlCommand('release', c),
  retry: async (c) => (await import('./control.ts')).controlCommand('retry', c as CommandContext<{ frames?: string }>),
  rerender: async (c) => (await import('./rerender.ts')).rerenderCommand(c as CommandContext<RerenderOptions>),
  priority: async (c) => (await import('./control.ts')).controlCommand('priority', c),
  why: async (c) => (await import('./why.ts')).whyCommand(c),
  'contact-sheet': async (c) => (await import('./contact-sheet.ts')).contactSheetCommand(c as CommandContext<ContactSheetOptions>),
  limit: async (c) => (await import('./limit.ts')).limitCommand(c),
  share: async (c) => (await import('./share.ts')).shareCommand(c),
  sick: async (c) => (await import('./sick.ts')).sickCommand(c),
  hosts: async (c) => (await import('./hosts.ts')).hostsCommand(c),
  host: async (c) => (await import('./host.ts')).hostCommand(c as CommandContext<HostOptions>),
  frame: async (c) => (await import('./frame.ts')).frameCommand(c as CommandContext<FrameOptions>),
  slot: async (c) => (await import('./slot.ts')).slotCommand(c as CommandContext<{ kill?: boolean; json?: boolean }>),
  queue: async (c) => (await import('./queue.ts')).queueCommand(c),
  tail: async (c) => (await import('./tail.ts')).tailCommand(c),
  demo: async (c) => (await import('./demo.ts')).demoCommand(c as CommandContext<DemoOptions>),
  credentials: async (c) => (await import('./credentials.ts')).credentialsCommand(c as CommandContext<CredentialsOptions>),
  sites: async (c) => (await import('./sites.ts')).sitesCommand(c as CommandContext<{ json?: boolean }>),
  site: async (c) => (await import('./site.ts')).siteCommand(c as CommandContext<SiteOptions>),
  bills: async (c) => (await import('./bills.ts')).billsCommand(c as CommandContext<BillsOptions>),
  budget: async (c) => (await import('./budget.ts')).budgetCommand(c as CommandContext<BudgetOptions>),
  cluster: async (c) => (await import('./cluster.ts')).clusterCommand(c as CommandContext<ClusterConfigOptions>),
  leaders: async (c) => (await import('./leaders.ts')).leadersCommand(c),
};

/** Adds the scheduler's flags (queue limits, retention, linked peers, the outsourcing policy), which `up` takes too. */
function withSchedulerFlags(cmd: Command): Command {
  return cmd
    .option('--max-site-frames <n>', SCHEDULER_FLAG_HELP.maxSiteFrames)
    .option('--max-user-frames <n>', SCHEDULER_FLAG_HELP.maxUserFrames)
    .option('--max-job-frames <n>', SCHEDULER_FLAG_HELP.maxJobFrames)
    .option('--keep-jobs <n>', SCHEDULER_FLAG_HELP.keepJobs)
    .option('--keep-hours <n>', SCHEDULER_FLAG_HELP.keepHours)
    .option('--peers <sites>', SCHEDULER_FLAG_HELP.peers)
    .option('--outsource-unrenderable <peers>', SCHEDULER_FLAG_HELP.outsourceUnrenderable)
    .option('--outsource-overflow <peers>', SCHEDULER_FLAG_HELP.outsourceOverflow)
    .option('--sandbox-all', SCHEDULER_FLAG_HELP.sandboxAll);
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

const FARM_LOOKUP = `
Finding the farm: --nats URL, else $RENDERBUS_NATS, else <data>/farm.json written by a
running 'renderbus up' (data: --data DIR, default ./.renderbus), else the URL in the credentials.
Credentials: --creds FILE, else $RENDERBUS_CREDS, else the operator credential that 'renderbus up'
made for whoever ran it (named in <data>/farm.json). The farm refuses connections without one.
Exit codes: 0 ok, 1 failed (farm unreachable, job failed, ...), 2 bad input or usage.`;

const SUBMIT_HELP = `
Examples:
  renderbus submit shot.pov --frames 1-24 --wait
  renderbus submit shot.pov --frames 1-100x5 --resolution 640x480 --priority 10 --require 'povray@3.7.*'
  renderbus submit shot.json                    a job file
  renderbus submit shot.json --priority 5       flags override the file's fields
  renderbus submit notes.txt --frames 1-10 --command 'sh -c "echo {frame} > {output}"' --pattern 'out_####.txt'
  renderbus submit job.yaml --param Frames=1-48 --param OutputDir=/srv/renders/sh010
                                                an Open Job Description template

Frames: '1-100', '1-100x5' (every 5th), '1,5,10-12'. Priority: lower is more urgent (default 50).
Renderer: povray for .pov scenes; anything else needs --command TEMPLATE with the tokens
{frame} {first} {last} {output} {scene} (--renderer command is then implied). A command job file
may add 'progress', 'errors' and 'sceneErrors' regexes; job files for Arnold kick, RenderMan prman,
Houdini husk, nuke -x and Maya Render are in tools/templates/ (docs/renderers.md).
Requirements are patterns with "don't care" parts: 'povray@3.7.*', 'blender@*', 'linux@6.*'.
Output: --output DIR (default <farm output>/<name>-<job id>), --pattern with '#' for the frame number.
The job's user is your credential's (--creds); the group defaults to your OS user's group.

Job file: one JSON object with the fields
  ${JOB_FILE_FIELDS}
  requirements: { ${REQUIREMENT_FIELDS} }
  output: { dir, pattern }
  notify: [URL, ...] or { webhooks: [URL, ...], email: [address, ...], on: [done, failed, cancelled, progress], everyPercent: N }
  env: { "NAME": "value", ... } (or --env NAME=VALUE): the renderer's own variables; it never sees the farm's
Paths in a job file are relative to the file. Every wrong field is reported by name, and a
JSON syntax error by its line and column.

Open Job Description: a job template (specificationVersion: jobtemplate-2023-09, YAML or JSON)
becomes one job of the command renderer per step, its dependencies the jobs' order; --param
NAME=VALUE sets its job parameters (relative PATH values: from the template's folder, or from
here for --param). An INT task parameter gives the frames, a CHUNK[INT] one (extension
TASK_CHUNKING) the chunks; embedded files are written under the output folder (openjd-<id>/);
environments' variables are the jobs' env, their scripts run around each task. All the steps
are queued or none; their ids print one a line. What the farm cannot run (several varying task
parameters, session working directories, ...) is refused naming the field:
docs/renderers.md, "Open Job Description templates".

Prints the job id alone on stdout (--json: the whole reply). With --wait: a progress bar on a
terminal, plain lines otherwise; exits 0 when every frame is done, 1 when the job failed or was
cancelled (naming the frames that failed and why), 2 for bad input.`;

/**
 * The `renderbus` command tree. `handlers` run the commands (tests pass fakes); `onResult`
 * receives the exit code of the command that ran.
 */
export function buildProgram(io: Io, handlers: Handlers, onResult: (code: number, command: string) => void): Command {
  const program = new Command('renderbus');
  program
    .description('renderbus: a render farm manager. Schedulers, resource registries and render servers are actors that talk over NATS.')
    .version(version(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help for a command')
    .option('--data <dir>', 'farm data directory (default: ./.renderbus)')
    .addOption(new Option('--nats <urls>', "NATS URL of the farm; a cluster's members comma-separated, nats://a:4222,nats://b:4222 (default: from <data>/farm.json)").env('RENDERBUS_NATS'))
    .option('--site <name>', "site name, the root of every subject (default: the credential's site)")
    .addOption(new Option('--creds <file>', "credentials file issued by the farm's operator (renderbus credentials add; default: the local operator's, from <data>/farm.json)").env('RENDERBUS_CREDS'))
    .addOption(new Option('--log-format <format>', "logs of the farm's processes: json, one object a line, or pretty, readable lines (default: pretty on a terminal, json in a pipe or a file)").env('RENDERBUS_LOG_FORMAT'))
    .configureOutput({ writeOut: (s) => void io.stdout.write(s), writeErr: (s) => void io.stderr.write(s) })
    .configureHelp({ showGlobalOptions: true })
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .addHelpText('after', FARM_LOOKUP);

  const action = (name: CommandName) => async (...params: unknown[]) => {
    const cmd = params[params.length - 1] as Command;
    const args = (cmd.processedArgs as unknown[]).filter((a): a is string => typeof a === 'string');
    const code = await handlers[name]({ args, opts: cmd.opts(), globals: program.opts(), io });
    onResult(code, name);
  };

  withSchedulerFlags(program
    .command('up'))
    .summary('start a whole farm on this machine, until Ctrl-C')
    .description('start a whole farm on this machine: nats-server, registry, scheduler and a render server; runs until Ctrl-C or SIGTERM')
    .option('--slots <n>', 'render slots of the local render server; 0 starts none (default: one per CPU)')
    .option('--port <n>', 'NATS client port; -1 picks a free one; a port given here that is taken is an error (default: 4222, or a free port if 4222 is taken)')
    .option('--listen <addr>', 'address NATS listens on, e.g. 0.0.0.0 so other machines can join (default: 127.0.0.1); NATS only, the monitor stays on --monitor-listen')
    .option('--cluster <n>', 'NATS servers on this machine: 1, or 3 clustered, with the journal and event streams kept on all three (R3) and every actor given the three URLs; with --port N they take N, N+1, N+2, else free ports (default: 1; docs/cluster.md)')
    .option('--host <name>', 'host name of the local render server (default: this machine\'s name)')
    .option('--grace <seconds>', 'on Ctrl-C or SIGTERM, how long running frames may finish before they are stopped and handed back (default: 60)')
    .option('--smtp <url>', NOTIFIER_FLAG_HELP.smtp)
    .option('--smtp-from <address>', NOTIFIER_FLAG_HELP.smtpFrom)
    .option('--webhook-secret-file <file>', 'file holding the secret that signs webhooks (x-renderbus-signature; default: $RB_WEBHOOK_SECRET, else <data>/webhook-secret, made on the first up)')
    .option('--webhook-allow <addresses>', NOTIFIER_FLAG_HELP.webhookAllow, collect)
    .option('--notify-attempts <n>', NOTIFIER_FLAG_HELP.notifyAttempts)
    .option('--monitor-port <n>', 'HTTP port of the web monitor, /metrics and /healthz; -1 picks a free one (default: 8080, or a free port if 8080 is taken)')
    .option('--store-min-free <MB>', 'free space on the data disk under which nats-server stops storing: submits and results are refused with "storage full" and retried until space is freed (default: 256); see docs/reliability.md')
    .option('--monitor-listen <addr>', 'address the web monitor listens on, e.g. 0.0.0.0 for browsers and Prometheus on other machines, which then need the access token (default: 127.0.0.1, whatever --listen says)')
    .option('--monitor-host <name>', MONITOR_FLAG_HELP.monitorHost, collect)
    .option('--leaf-listen <host:port>', 'with --site: the leaf listener other sites dial to link to this one, e.g. 0.0.0.0:7422 (kept in <data>/fed/site.json); needs --advertise')
    .option('--advertise <host:port>', 'with --leaf-listen: the address the other sites dial, as they reach this machine (behind NAT or a port forward: the public one), e.g. farm.studio.example:7422')
    .option('--encrypt-results [mode]', "with --site: every outsourced job's files (frames, logs, sample thumbnails) come back encrypted to this site's result key (<data>/fed/result-key.txt, age format), as if each job said `encryptResults`; mode 'purge' (the default): the vendor then removes its clear copies once the result is sent; 'keep': it may keep them (docs/federation.md, \"Encrypted results\")")
    .option('--keep-inputs <duration>', "with --site: how long the inputs of a peer's job (its files, its CAS blobs) are kept once it ended, so the peer can re-render frames of it without sending them again (renderbus rerender), e.g. 7d, 36h, 90m, 1d12h; then a periodic sweep removes them and a re-render is refused naming the retention (default: 7d)")
    .addHelpText('after', '\nLinked sites (README, "Linking sites"; docs/federation.md): with --site NAME the farm runs as site NAME,\nready to link to other sites: its JetStream domain is NAME, its peers come from <data>/fed/site.json\n(renderbus site invite/join), and its link and intake get credentials of their own. A data directory\nthat is a site already runs as one without --site; without it, nothing of this applies.\n  renderbus up --site studio --leaf-listen 0.0.0.0:7422 --advertise farm.studio.example:7422\n  renderbus up --site v1\nWrites <data>/farm.json so other commands find the farm, and logs to <data>/logs/farm.log.\nThe notifier (webhooks, email) runs in it too: see docs/notifications.md. So does the monitor\n(the web monitor at /, Prometheus /metrics, on 127.0.0.1 unless --monitor-listen): see the README,\nWeb monitor and Metrics. The monitor\'s access token (<data>/monitor-token) and the webhook secret\n(<data>/webhook-secret) are made on the first up, mode 0600; `up` prints the monitor\'s URL with the token.')
    .action(action('up'));

  program
    .command('registry')
    .summary('run the resource registry alone')
    .description('run the resource registry alone against the farm\'s NATS (JSON logs on stdout); a second one, e.g. on another machine, stands by and takes over when the leading one dies or stops')
    .action(action('registry'));

  withSchedulerFlags(program
    .command('scheduler'))
    .summary('run the scheduler alone')
    .description('run the scheduler alone against the farm\'s NATS (JSON logs on stdout)')
    .addHelpText('after', '\nQueue limits and the retention of finished jobs: docs/scheduling.md, "Queue limits" and "Finished jobs".\nStart a second scheduler (e.g. on another machine) and it stands by: it takes over when the leading\none\'s lease lapses (about 4.5 s after it died) or at once when it is stopped. The `up` of the site\ncounts as one. `renderbus leaders` shows which leads. docs/running-actors.md, "A standby scheduler and registry".')
    .action(action('scheduler'));

  program
    .command('notifier')
    .summary('run the notifier alone: webhooks and email for jobs')
    .description('run the notifier alone against the farm\'s NATS (JSON logs on stdout): it sends the webhooks and emails that jobs ask for in "notify" (their end, and their progress every N%) and reports each as an event on rb.<site>.evt.notify.<job>.<sent|failed>')
    .option('--smtp <url>', NOTIFIER_FLAG_HELP.smtp)
    .option('--smtp-from <address>', NOTIFIER_FLAG_HELP.smtpFrom)
    .option('--webhook-secret-file <file>', NOTIFIER_FLAG_HELP.webhookSecretFile)
    .option('--webhook-allow <addresses>', NOTIFIER_FLAG_HELP.webhookAllow, collect)
    .option('--notify-attempts <n>', NOTIFIER_FLAG_HELP.notifyAttempts)
    .addHelpText('after', '\nRun one notifier per site (two would send everything twice). `renderbus up` runs one already.\nExample:\n  RB_WEBHOOK_SECRET=s3cret renderbus notifier --creds notifier.creds --smtp smtp://mail.studio.example:25 --smtp-from renderfarm@studio.example')
    .action(action('notifier'));

  program
    .command('monitor')
    .summary('run the farm monitor alone: the web monitor and Prometheus /metrics')
    .description('run the farm monitor alone against the farm\'s NATS (JSON logs on stdout): it follows every event, asks the scheduler and the registry for a snapshot every few seconds, and serves the web monitor (GET /), its JSON API and live stream (/api/...), GET /metrics (Prometheus text format) and GET /healthz over HTTP')
    .option('--port <n>', MONITOR_FLAG_HELP.port)
    .option('--listen <addr>', MONITOR_FLAG_HELP.listen)
    .option('--interval <seconds>', MONITOR_FLAG_HELP.interval)
    .option('--token-file <file>', MONITOR_FLAG_HELP.tokenFile)
    .option('--monitor-host <name>', MONITOR_FLAG_HELP.monitorHost, collect)
    .addHelpText('after', '\nThe web monitor and the metrics are in the README (Web monitor, Metrics); access: docs/web-monitor.md.\n`renderbus up` runs a monitor already.\nExample:\n  renderbus monitor --creds monitor.creds --nats nats://head:4222 --listen 0.0.0.0 --port 9464 --token-file ~/.renderbus-token --monitor-host head.studio.example')
    .action(action('monitor'));

  program
    .command('render-server')
    .summary('run a render server on this machine and join the farm')
    .description('run a render server with its render slots and join the farm (JSON logs on stdout)')
    .option('--slots <n>', 'render slots (default: one per CPU)')
    .option('--host <name>', 'host name on the farm; must be the one its credential names (default: the credential\'s)')
    .option('--packages <list>', "rendering packages to offer as name@version, comma-separated, e.g. 'povray@3.7.0.10,blender@4.1'")
    .option('--licenses <list>', "licenses this host holds, comma-separated, e.g. 'arnold,nuke'")
    .option('--grace <seconds>', 'on SIGTERM or Ctrl-C the server drains: no new frames, frames in hand go back, running ones may finish this long before they are stopped and handed back (default: 60)')
    .addHelpText('after', '\nA render host needs its renderers (POV-Ray with its standard includes, povray-includes: checked at\nstart; Blender for .blend jobs; each command job\'s program) and the job files at the paths they were submitted with. Each\nfailed frame is logged at warn. See docs/renderers.md.\n\nExample, a second render host on another machine (its credential from the head node:\nrenderbus credentials add render-server node-7 --url nats://farm-host:4222):\n  renderbus render-server --creds render-server-node-7.creds --slots 8')
    .action(action('render-server'));

  program
    .command('submit')
    .summary('submit a render job: a scene and flags, a job file, or an Open Job Description template')
    .description('submit a render job: a scene file with flags, a job file (JSON) whose fields the flags override, or an Open Job Description job template (one job per step)')
    .argument('[file]', 'a job file (*.json), an Open Job Description template (*.yaml, or JSON with specificationVersion), or else the scene file')
    .argument('[scene]', 'the scene, when a job file comes first (overrides its "scene")')
    .option('--frames <list>', "frames to render: '1-24', '1-100x5', '1,5,10-12'")
    .option('--renderer <name>', 'povray, blender or command (default: povray for .pov scenes, blender for .blend)')
    .option('--command <template>', 'command template for --renderer command')
    .option('--resolution <WxH>', 'image size, e.g. 320x240')
    .option('--priority <n>', 'priority 0-1000, lower is more urgent (default: 50)')
    .option('--require <pattern>', "a package the host must have, e.g. 'povray@3.7.*' (repeatable)", collect)
    .option('--license <name>', 'a license the host must hold (repeatable)', collect)
    .option('--chunk <n>', 'frames per task: consecutive frames rendered in one process')
    .option('--task-duration <seconds>', 'how long each task should last: the scheduler grows or shrinks the chunk from measured frame times')
    .option('--memory <MB>', 'memory a task may use: smaller hosts do not take it; a task over it is stopped and retried with 1.5 times as much')
    .option('--project <name>', 'project (show) the job counts against in fair share and outsourcing budgets (default: its group)')
    .option('--outsource <peer>', "the job's site: render it at this linked site instead of here: the job is bundled with its scene and supportFiles into hotfolders/outgoing/<peer>/ and its frames come back into its output folder; 'auto': ask every linked peer for a quote and render where it finishes first within --budget, here or there (docs/federation.md)")
    .option('--chain', "with --outsource (or the site's policy): the site it goes to may pass it on to one of its own peers when none of its hosts can render it; frames and bills come back along the chain (docs/federation.md, \"Chaining\"); without it the job goes only where this site sends it")
    .option('--budget <amount>', "the most the job may cost at a peer, e.g. '12.50 EUR': with --outsource auto, a quote over it (or in another currency) is skipped")
    .option('--split', "with --outsource auto (or the site's overflow policy): its frames may be divided between here and the peers whose quotes fit the budget, so that every part finishes at about the same time; each part (at least 5 frames) is a job of its own, and the frames come together in the job's output folder (docs/federation.md, \"Split jobs\")")
    .option('--output <dir>', 'where the frames land (default: <farm output>/<name>-<job id>)')
    .option('--pattern <name>', "frame file name, '#' for the frame number (default: frame_####.png)")
    .option('--name <name>', 'job name (default: the scene file name)')
    .option('--user <user>', "submitting user: must be your credential's (default: your credential's user)")
    .option('--group <group>', 'group (default: the OS user\'s group)')
    .option('--notify <url>', 'webhook URL to POST to when the job ends, the original form (repeatable)', collect)
    .option('--notify-url <url>', 'webhook URL that gets a signed JSON POST for the job\'s notifications (repeatable)', collect)
    .option('--notify-email <address>', 'email address told when the job ends, and of its progress with --notify-every (repeatable)', collect)
    .option('--notify-every <percent>', 'also notify every this many percent of the frames, with a sample frame (a thumbnail by email), e.g. 25')
    .option('--notify-on <events>', "what to notify of, comma-separated: done,failed,cancelled,progress (default: the job's end, and progress with --notify-every)")
    .option('--limit <name>', 'a limit (licence) the job\'s tasks count against, see renderbus limit (repeatable)', collect)
    .option('--env <NAME=VALUE>', "an environment variable for the renderer, e.g. OCIO=/studio/aces.ocio (repeatable); renderers get only PATH, HOME, LANG, LC_ALL, TZ, TMPDIR and these", collect)
    .option('--after-frames <id>', 'frame by frame: frame N starts once frame N of this job is done (repeatable)', collect)
    .option('--after <id>', 'start only once this job is done, e.g. a comp after its render (repeatable)', collect)
    .option('--param <NAME=VALUE>', 'an Open Job Description template\'s job parameter, e.g. Frames=1-100 (repeatable)', collect)
    .option('--hold', 'queue the job held: nothing starts until renderbus release <id>')
    .option('--preview-first', 'render the first, last and middle frames first, then the rest')
    .option('--wait', 'follow the job until it ends, with progress')
    .option('--json', 'print machine-readable JSON')
    .addHelpText('after', SUBMIT_HELP)
    .action(action('submit'));

  program
    .command('jobs')
    .summary('list the jobs')
    .description('list the jobs: id, name, state, priority, frames done/total, frames running (and in hand: handed to a slot that has not started them), why a job waits')
    .option('--json', 'print the job summaries as JSON')
    .action(action('jobs'));

  program
    .command('job')
    .summary('show one job and its frames')
    .description("show one job: its summary and every frame (state, host/slot, attempt, time, error); a frame 'in hand' is handed to a slot that renders another task and has not started it, and is not counted running")
    .argument('<id>', 'job id (see renderbus jobs)')
    .option('--json', 'print the job as JSON')
    .action(action('job'));

  program
    .command('limit')
    .summary('list or set the site\'s limits (licences)')
    .description('list the site\'s named limits with their use; NAME MAX sets one (jobs name the limits they need in "limits"); NAME --remove removes one')
    .argument('[name]', 'limit name, e.g. maya')
    .argument('[max]', 'how many may be in use at once')
    .option('--per-host', 'count hosts, not running tasks: a per-machine licence counts once however many of the host\'s slots use it')
    .option('--remove', 'remove the limit (jobs that name it then wait)')
    .option('--json', 'print the limits as JSON')
    .action(action('limit'));

  program
    .command('share')
    .summary('list or set the projects\' fair shares')
    .description('fair share between projects (shows): no arguments lists the projects with their weight, share and use; PROJECT WEIGHT sets one (fair share is on once any is set, and projects not named weigh 1); PROJECT --remove removes one')
    .argument('[project]', 'project name, as jobs give it in "project" (default: their group)')
    .argument('[weight]', 'its weight: busy projects split the slots in proportion (1-10000)')
    .option('--remove', 'remove the project\'s weight (it weighs 1 again; with no weight left, fair share is off)')
    .option('--json', 'print the shares as JSON')
    .addHelpText('after', '\nShares are restored at frame boundaries: a project under its share gets the slots that free next; nothing is killed.\nExample: renderbus share feature 3 && renderbus share commercials 1')
    .action(action('share'));

  program
    .command('budget')
    .summary('list or set the projects\' outsourcing budgets')
    .description('budgets for outsourcing, per project: no arguments lists every project with a budget or a bill (budget, spent, left); PROJECT AMOUNT CURRENCY sets one (operators only); PROJECT --clear removes it. A project whose budget is spent (left 0 or less) sends no new job to a vendor: a job with "site" is refused at submit (RB_BUDGET_EXCEEDED), and --outsource-unrenderable keeps its jobs here, saying why. Jobs already sent go on; local rendering is never stopped')
    .argument('[project]', 'project name, as jobs give it in "project" (default: their group)')
    .argument('[amount]', 'the budget in the currency\'s major unit, e.g. 500 or 499.90')
    .argument('[currency]', 'ISO 4217 code, e.g. EUR: only bills in this currency count against it')
    .option('--clear', 'remove the project\'s budget')
    .option('--json', 'print the budgets as JSON (amounts in minor units: cents)')
    .addHelpText('after', '\nThe spend is the sum of the vendors\' bills for the project\'s jobs, as the scheduler took them in (journaled: a restart keeps it).\nBills in another currency than the budget\'s are listed beside it and never converted.\nExample: renderbus budget feature 5000 EUR && renderbus budget')
    .action(action('budget'));

  program
    .command('sick')
    .summary('list sick hosts, or give one work again')
    .description('list the hosts that failed frames of several different jobs and get no work for a while (30 min); HOST --clear gives one work again once it is fixed')
    .argument('[host]', 'the host to clear')
    .option('--clear', 'give the host work again')
    .option('--json', 'print the sick hosts as JSON')
    .action(action('sick'));

  program
    .command('why')
    .summary('say why a job is not rendering')
    .description('say why a job is not rendering: held, paused, waiting for another job, no host matching (the nearest ones and what they lack), slots taken by more urgent work, hosts kept away')
    .argument('<id>', 'job id (see renderbus jobs)')
    .option('--json', 'print the reason as JSON (kind, text and details)')
    .action(action('why'));

  program
    .command('contact-sheet')
    .summary('write one image with every frame\'s thumbnail, for dailies')
    .description('write one image with a thumbnail of every frame of a job in frame order, each labelled with its frame number; frames not done are grey tiles naming their state')
    .argument('<id>', 'job id (see renderbus jobs)')
    .option('--out <file>', 'the image to write: .png, or .jpg for JPEG; a directory writes the default name in it (default: ./<job name>-<id>-contact-sheet.png)')
    .option('--columns <n>', 'thumbnails per row, 1-200 (default: about square, at least 4)')
    .option('--width <px>', 'width of each thumbnail in pixels, 16-4096; the height follows the frames\' aspect (default: 240)')
    .option('--json', 'print {path, frames, done, width, height, columns, unreadable, tiles} as JSON')
    .addHelpText('after', '\nReads the frames from the job\'s output files, so it runs where the farm\'s storage is mounted.\nExits 1 when the job has no done frame yet, or when a done frame\'s file cannot be read (the sheet\nis still written, with that frame as a placeholder; the files are listed on stderr).\n\nExamples:\n  renderbus contact-sheet j1a2b3c4\n  renderbus contact-sheet j1a2b3c4 --out dailies/shot010.jpg --columns 6 --width 320')
    .action(action('contact-sheet'));

  program
    .command('cancel')
    .summary('cancel a job')
    .description('cancel a job: queued frames are dropped and running ones stopped')
    .argument('<id>', 'job id (see renderbus jobs)')
    .option('--json', 'print the job summary as JSON')
    .action(action('cancel'));

  const control = (name: 'pause' | 'resume' | 'release', summary: string, description: string) =>
    program.command(name).summary(summary).description(description).argument('<id>', 'job id (see renderbus jobs)').option('--json', 'print the job summary as JSON').action(action(name));
  control('pause', 'pause a job', 'pause a job: no new frames start (frames a slot holds in hand, not started yet, go back to the queue); running ones finish (resume with renderbus resume)');
  control('resume', 'resume a paused job', 'resume a paused job: its frames start again');
  control('release', 'release a job submitted with --hold', 'release a job submitted with --hold, so its frames may start');
  program
    .command('retry')
    .summary('render failed frames again, forgive kept-away hosts')
    .description('queue a job\'s failed frames again with fresh attempts, or, with --frames, the chosen frames whether they failed or were done; hosts kept away from the job (failed too many of its frames, lack its program, cannot see its files) are forgiven, and a failed job renders again. Says what it did; refused when it would change nothing')
    .argument('<id>', 'job id (see renderbus jobs)')
    .option('--frames <list>', "the frames to render again, e.g. '12,40-45' (default: every failed frame)")
    .option('--json', 'print the job summary as JSON')
    .action(action('retry'));
  program
    .command('rerender')
    .summary('render frames of an ended job again, as a new job')
    .description("render frames of a job that ended (done, failed or cancelled) again as a new job: the same description, those frames, the same output folder, the new job naming the old one (rerenderOf). A job that was outsourced goes to the same site, which renders it from the inputs it kept (no file is sent again, and the files here, changed or gone since, play no part); the site refuses it once it no longer keeps them (renderbus up --keep-inputs) and the new job fails with its reason. A local job's renders here from its files as they are now. Unlike retry, which renders frames again within the same job (also while it runs; not for an outsourced job), rerender leaves the old job as it ended and gives the new one its own id, history and bill. A job still running or unknown is refused")
    .argument('<id>', 'job id of the ended job (see renderbus jobs)')
    .requiredOption('--frames <list>', "the frames to render again, each a frame of the job, e.g. '3,7-9'")
    .option('--wait', 'follow the new job until it ends (exit 0 when done)')
    .option('--json', 'print the new job as JSON')
    .action(action('rerender'));
  program
    .command('priority')
    .summary('change a job\'s priority')
    .description('change the priority of a queued or running job (0-1000, lower is more urgent); running frames go on')
    .argument('<id>', 'job id (see renderbus jobs)')
    .argument('<priority>', 'the new priority, 0-1000')
    .option('--json', 'print the job summary as JSON')
    .action(action('priority'));

  program
    .command('hosts')
    .summary('list the render hosts: up/down/sick, slots busy/free, load')
    .description('list every render host: up (in the registry; draining too), down (dropped by the registry in the last 7 days, with why), sick (the scheduler gives it no work); slots busy/free, load, cpu, ram, os, packages, last seen')
    .option('--json', 'print the hosts as JSON: the registry\'s records with state, draining, sick (null: unknown), slotsBusy and slotsFree')
    .addHelpText('after', '\nWhen the scheduler does not answer, the hosts are still listed and sickness is reported unknown.')
    .action(action('hosts'));

  program
    .command('host')
    .summary('show one render host, or drain, undrain or stop it')
    .description('show one render host: machine, OS, CPUs, RAM, swap, rendering packages and versions, licenses, and each slot (state, task, job, frames, since when); --drain, --undrain or --stop steers its render server from anywhere')
    .argument('<name>', 'host name (see renderbus hosts)')
    .option('--drain', 'the render server takes no new frames, hands back those it held and finishes the running ones; it stays on the farm until undrained or stopped')
    .option('--undrain', 'a drained render server takes new frames again (a server that is stopping refuses)')
    .option('--stop', 'the render server drains (running frames may finish for its --grace, default 60 s, then are handed back), leaves the farm and exits')
    .option('--json', 'print the host as JSON (with --drain/--undrain/--stop: the render server\'s answer)')
    .addHelpText('after', '\n--drain, --undrain and --stop go alone. An unknown host is an error (exit 1) that names the hosts there are.\nExamples:\n  renderbus host node-7\n  renderbus host node-7 --drain\n  renderbus host node-7 --undrain')
    .action(action('host'));

  program
    .command('frame')
    .summary('show one frame: its process figures and its log; follow or kill it')
    .description("show one frame: state, host/slot, attempt, times (handed out, started, finished), error, its earlier failed attempts (host/slot, times, error; the last 10), stats (wall, CPU, peak memory, bytes), the live figures of its process while it runs (CPU %, memory now and peak, bytes read/written), its renderer's last progress percentage when it says one meanwhile, and the end of its log")
    .argument('<job:frame>', 'job id and frame number, e.g. j1a2b3c:12')
    .option('--log', 'print the whole log only')
    .option('--follow', 'print the log and follow it while the frame runs; ends when its attempt ends')
    .option('--kill', 'kill the running frame; the scheduler retries it like a failure (up to maxAttempts)')
    .option('--json', 'print {jobId, frame, live, percent?, logPath, log} as JSON (--follow: one {log} object per chunk)')
    .addHelpText('after', "\nThe log is <output dir>/.rb-logs/<job>.<task>-a<attempt>.log, read from where the CLI runs (the shared filesystem).\nExamples:\n  renderbus frame j1a2b3c:12\n  renderbus frame j1a2b3c:12 --follow")
    .action(action('frame'));

  program
    .command('slot')
    .summary('show one render slot and the process it runs, or kill it')
    .description("show one render slot: state, task, job, frames, since when, and its process's figures (CPU %, memory now and peak, bytes read/written, running time)")
    .argument('<host/slot>', 'host name and slot number, e.g. node-7/0')
    .option('--kill', "kill the slot's running task; the scheduler retries its frames like a failure")
    .option('--json', "print the registry's slot record with {host, live} as JSON")
    .action(action('slot'));

  program
    .command('queue')
    .summary('show the queue in order, with why each job waits')
    .description('show the jobs that have not ended in queue order: position, job, name, project, priority, state, frames queued/running/done, and why it waits; with fair share on, the projects\' shares above')
    .option('--json', 'print {shares, jobs} as JSON: the shares reply (null when it failed) and the job summaries, each with its position')
    .action(action('queue'));

  program
    .command('tail')
    .summary('print the messages on a subject filter, decoded, as they flow')
    .description('print the messages on a subject filter as they flow, decoded, one line each (Ctrl-C stops); when NATS restarts it says so and reconnects (messages sent meanwhile are not shown)')
    .argument('[filter]', "NATS subject filter (default: 'rb.<site>.evt.>', every event of the site)")
    .option('--json', "one JSON object per message: {subject, data}")
    .addHelpText('after', "\nExamples:\n  renderbus tail\n  renderbus tail 'rb.studio.evt.job.>'\n  renderbus tail 'rb.studio.>' --json")
    .action(action('tail'));

  program
    .command('credentials')
    .summary("issue, list and revoke the credentials of the farm's bus")
    .description("issue, list and revoke who may use the farm's NATS: run it where the farm's data directory is (--data); a running farm applies a change at once")
    .argument('<verb>', 'add, list or revoke')
    .argument('[role]', 'artist, operator, render-server, scheduler, registry, notifier or monitor')
    .argument('[name]', 'the user (artist, operator), the render host, or the service')
    .option('--out <file>', 'where add writes the credential (default: ./<role>-<name>.creds; mode 0600)')
    .option('--url <url>', "the farm's NATS URL as the holder reaches it, written into the file; a cluster's, comma-separated (default: the running farm's, every member)")
    .option('--any-host', 'a render-server credential for any host: simulated farms only (renderbus sim-farm)')
    .option('--force', 'overwrite --out')
    .option('--json', 'one JSON document')
    .addHelpText('after', "\nRoles and what each may do: docs/security.md.\nExamples, on the head node:\n  renderbus credentials add render-server node-7 --url nats://head.studio.example:4222\n  renderbus credentials add artist ann\n  renderbus credentials revoke artist ann\n  renderbus credentials list\nThen on node-7: renderbus render-server --creds render-server-node-7.creds")
    .action(action('credentials'));

  program
    .command('cluster')
    .summary("print the nats.conf of one member of a studio's own NATS cluster")
    .description("print the nats.conf of member N of a NATS cluster on the studio's own machines: its client listener, JetStream with its store, the cluster block with the routes to every member and the farm's route password (<data>/nats/cluster.secret, made on first use), and the include of auth.conf. Run it on the head node once per member and copy each file, with <data>/nats/auth.conf, to its machine")
    .argument('<verb>', 'config')
    .option('--node <n>', 'which member, 1 to the number of routes; it is server_name n<N>')
    .option('--routes <list>', "every member's route address as the others reach it, host:port comma-separated, in member order, e.g. a:6222,b:6222,c:6222")
    .option('--listen <host:port>', 'the client listener (default: 0.0.0.0:4222)')
    .option('--store <dir>', "the member's JetStream store (default: /var/lib/renderbus/nats)")
    .option('--name <name>', 'the cluster name, the same on every member (default: renderbus)')
    .addHelpText('after', '\nExample, three machines a, b and c:\n  renderbus cluster config --node 1 --routes a:6222,b:6222,c:6222 > n1.conf\nthen on a: nats-server -c n1.conf (auth.conf beside it); actors: --nats nats://a:4222,nats://b:4222,nats://c:4222. docs/cluster.md')
    .action(action('cluster'));

  program
    .command('leaders')
    .summary('show which scheduler and registry lead the site, since when, last renewal')
    .description("show which process leads the site's scheduler and which its registry: host, pid, since when, and how long ago it renewed its lease (read from the site's leaders bucket, RB_<SITE>_LEADERS). Standbys write nothing there: they are the other processes of the same role. For operators")
    .option('--json', 'print {site, leases: [{role, revision, lease: {holder, host, pid, name, since, renewedAt} | null}]} as JSON')
    .addHelpText('after', "\nA lease not renewed for 4 s is taken over by a standby; one renewed seconds ago belongs to a leader whose renewals are held up (it holds still meanwhile). 'renewed' compares the leader's clock with this machine's. docs/running-actors.md, \"A standby scheduler and registry\".")
    .action(action('leaders'));

  program
    .command('sites')
    .summary('list the linked sites: link state, round trip, bytes waiting either way')
    .description("list this site's peers (other renderbus sites linked to it): role, link state and since when, round trip, bundles and bytes waiting to cross either way. Reads the peers from <data>/fed/site.json and asks the site's link service for their links")
    .option('--json', 'print {site, listen, answered, peers: [{name, role, url, publicKey, allowUnsigned, addedAt, state, link}]} as JSON')
    .addHelpText('after', `\nWhen the link service does not answer, the stored peers are still listed, with state "unknown (the link service did not answer)".\nWhat crosses the links: renderbus tail 'rb.fed.>'. Linking: README, "Linking sites".`)
    .action(action('sites'));

  program
    .command('bills')
    .summary('list the vendors\' bills, summed per project and per vendor; CSV/JSON export')
    .description("list every bill this site's vendors sent for the jobs it outsourced (kept by the intake in <data>/fed/bills/<vendor>/), one line each: vendor, job, project, frames, CPU hours, GB, amount, whether its signature was verified, date; then the sums per project and per vendor, per currency (amounts in different currencies are never added). Reads the site's data folder (--data), so it works whether the farm runs or not. A bill file that cannot be read is named and left out of the sums")
    .option('--project <project>', 'only the bills of this project')
    .option('--vendor <site>', 'only the bills of this vendor (with --issued: this customer)')
    .option('--since <date>', 'only bills from this date on: YYYY-MM-DD (UTC) or an ISO 8601 time')
    .option('--issued', 'the bills this site sent to the peers whose jobs it rendered (<data>/fed/bills-issued/<peer>/)')
    .option('--csv', 'print the bills as CSV (RFC 4180, a header row; amounts in the major unit and in minor units)')
    .option('--json', 'print {bills, perProject, perVendor, problems} as JSON')
    .addHelpText('after', '\nExamples:\n  renderbus bills --project feature --since 2026-12-01\n  renderbus bills --csv > bills.csv\n  renderbus bills --issued --vendor studio\nBudgets that stop outsourcing once spent: renderbus budget --help.')
    .action(action('bills'));

  program
    .command('site')
    .summary('link to another site (invite, join, remove), show one peer, or release its quarantine')
    .description('link this site to another renderbus site: at the site with a leaf listener (the studio), invite PEER prints an invitation token; at the peer (the vendor), join TOKEN records the link and opens it; remove PEER unlinks; site PEER shows one peer in full, with the bundles waiting for the intake; release PEER lifts the quarantine its link\'s watchdog put on it, so the intake takes its held bundles again. Run it where the site\'s data directory is (--data); a running site applies a change itself')
    .argument('<what>', 'invite, join, remove, release, or a peer\'s name')
    .argument('[arg]', 'the peer (invite, remove, release) or the token (join)')
    .option('--allow-unsigned', 'invite, join: take bundles without a signature from this peer (bundles an operator copies by hand)')
    .option('--quota <size>', 'site PEER --quota 500G: the bytes PEER may store at this site (its content store and job trees; default 200G); a job bundle that would pass it goes to failed/ with RB_QUOTA_EXCEEDED')
    .option('--json', 'one JSON document')
    .addHelpText(
      'after',
      `\nAt the studio (a site run with --leaf-listen and --advertise):\n  renderbus site invite v1              prints a token: hand it to v1's operator by a safe channel (it holds v1's leaf password)\nAt the vendor v1:\n  renderbus site join rbinv1.eyJ2Ijo…   records the studio and dials it (a running site restarts its NATS server for it)\nThen, at either: renderbus sites, renderbus site v1 (shows what v1 stores here against its quota).\nAt the vendor: renderbus site studio --quota 500G   what the studio may store here (default 200G).\nA peer whose traffic wedged the link is quarantined (renderbus sites shows it): its bundles wait in\nincoming/<peer>/ until an operator runs renderbus site release <peer> (docs/federation.md,\n"Signatures and quarantine at the intake").\nA new peer at the studio is a reload of its NATS server (other links stay up); joining, or removing\nthe site you dial, restarts the NATS server of the site that dials (actors reconnect by themselves).\nREADME, "Linking sites"; docs/federation.md.`,
    )
    .action(action('site'));

  program
    .command('demo')
    .summary('render a small POV-Ray animation on a temporary farm')
    .description('render a small POV-Ray animation on a temporary farm: starts it, renders 36 frames with progress, copies them to ./renderbus-demo-output/, stops it')
    .option('--slots <n>', 'render slots (default: one per CPU)')
    .option('--keep', 'keep the temporary farm data directory (logs, frames)')
    .addHelpText('after', '\nNeeds povray and nats-server (npm run demo installs them). With --data DIR the farm lives in DIR\ninstead of a temporary directory, and DIR is kept.')
    .action(action('demo'));

  addSimFarmCommand(program, io, onResult);
  return program;
}

/** Runs one command line; resolves to the exit code. Errors are printed, never thrown. */
export async function run(argv: string[], io: Io = processIo(), handlers: Handlers = defaultHandlers): Promise<number> {
  let code: number = ExitCode.Ok;
  let command = '';
  const program = buildProgram(io, handlers, (c) => (code = c));
  program.hook('preAction', (_program, actionCommand) => {
    command = actionCommand.name();
  });
  try {
    await program.parseAsync(argv);
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      // help and --version end with exit code 0; any parse error is a usage error
      return err.exitCode === 0 ? ExitCode.Ok : ExitCode.Usage;
    }
    io.stderr.write(describeError(err, command));
    return exitCodeFor(err);
  }
}
