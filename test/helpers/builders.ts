import type { HostInventory, JobSpec, TaskAssignment, TaskResult } from '../../protocol/index.ts';
import { PROTOCOL_MAJOR } from '../../protocol/index.ts';

/** A job description with defaults; override what the test is about. */
export function aJobSpec(over: Partial<JobSpec> = {}): JobSpec {
  return {
    name: 'shot',
    scene: '/scenes/shot.pov',
    frames: '1-4',
    output: { dir: '/out/shot' },
    ...over,
  };
}

export function anInventory(over: Partial<HostInventory> = {}): HostInventory {
  return {
    machine: { family: 'x86_64', type: 'kvm' },
    os: { family: 'unix', type: 'linux', version: '6.1.0', distro: 'debian@12' },
    cpu: { count: 2, family: 'intel', type: 'Xeon', speedMhz: 2200 },
    ramMb: 24000,
    swapMb: 0,
    packages: [{ name: 'povray', version: '3.7.0.10' }],
    licenses: [],
    ...over,
  };
}

export function aTaskResult(over: Partial<TaskResult> & Pick<TaskResult, 'jobId' | 'taskIndex' | 'attempt'>): TaskResult {
  return {
    v: PROTOCOL_MAJOR,
    host: 'h1',
    slot: 0,
    taskId: `${over.jobId}.${over.taskIndex}`,
    status: 'done',
    outputs: [],
    stats: { wallMs: 100, cpuMs: 90, peakRssKb: 1000, bytesWritten: 10 },
    wantNext: true,
    ...over,
  };
}

let nextTaskIndex = 0;

/** A task leased to a slot, with defaults; each call is a new task of its job unless taskIndex is given. */
export function aTaskAssignment(over: Partial<TaskAssignment> = {}): TaskAssignment {
  const jobId = over.jobId ?? 'j1';
  const taskIndex = over.taskIndex ?? nextTaskIndex++;
  const renderer = over.renderer ?? 'command';
  return {
    taskId: `${jobId}.${taskIndex}`,
    jobId,
    taskIndex,
    attempt: 1,
    slot: 0,
    frames: [1],
    renderer,
    ...(renderer === 'command' ? { command: `sh -c 'printf {frame} > {output}'` } : {}),
    scene: '/scenes/scene.pov',
    outputDir: '/out',
    outputPattern: 'f_####.txt',
    ...over,
  };
}

