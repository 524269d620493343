import { quote } from 'shell-quote';
import type { ActionOut } from './action.ts';

/** An environment's script actions, for the wrapper of the steps it applies to. */
export interface EnvActions {
  name: string;
  onEnter: ActionOut;
  onExit?: ActionOut;
}

const line = (a: ActionOut): string => quote([...(a.timeout !== undefined ? ['timeout', String(a.timeout)] : []), ...a.argv]);

/**
 * A POSIX sh script that enters `envs` in order around the task's command (its arguments), and
 * exits those entered in reverse order. OpenJD enters environments once per session, a run of
 * tasks on one host; a renderbus task is a process of its own, so they are entered for every task
 * (set-up that must happen once per host belongs elsewhere). As the specification asks, lines
 * `openjd_env: NAME=VALUE` and `openjd_unset_env: NAME` that onEnter prints set and unset
 * variables for what runs inside (an unset wins). A failed onEnter fails the task without running
 * it; a failed onExit fails a task that had succeeded.
 */
export function envWrapper(envs: readonly EnvActions[]): string {
  const out = [
    '# Written by renderbus: the Open Job Description environments of this step, entered around each task.',
    'rb_enter() {',
    '  rb_out=$(mktemp) || return 1',
    '  "$@" >"$rb_out"',
    '  rb_rc=$?',
    '  cat "$rb_out"',
    '  while IFS= read -r rb_line || [ -n "$rb_line" ]; do',
    "    case $rb_line in 'openjd_env: '*) export \"${rb_line#openjd_env: }\" || rb_rc=1 ;; esac",
    '  done <"$rb_out"',
    '  while IFS= read -r rb_line || [ -n "$rb_line" ]; do',
    "    case $rb_line in 'openjd_unset_env: '*) unset \"${rb_line#openjd_unset_env: }\" ;; esac",
    '  done <"$rb_out"',
    '  rm -f "$rb_out"',
    '  return $rb_rc',
    '}',
    'rb_status=0',
  ];
  const nest = (i: number, pad: string): void => {
    const e = envs[i];
    if (!e) {
      out.push(`${pad}"$@"`, `${pad}rb_status=$?`);
      return;
    }
    out.push(`${pad}if rb_enter ${line(e.onEnter)}; then`);
    nest(i + 1, `${pad}  `);
    if (e.onExit) out.push(`${pad}  ${line(e.onExit)} || { rb_rc=$?; [ "$rb_status" -ne 0 ] || rb_status=$rb_rc; echo ${quote([`renderbus: environment '${e.name}' failed to exit`])} >&2; }`);
    out.push(`${pad}else`, `${pad}  rb_status=$?`, `${pad}  echo ${quote([`renderbus: environment '${e.name}' failed to enter`])} >&2`, `${pad}fi`);
  };
  nest(0, '');
  out.push('exit "$rb_status"', '');
  return out.join('\n');
}
