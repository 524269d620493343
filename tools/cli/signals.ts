/**
 * Resolves on the first SIGINT or SIGTERM so a long-running command can stop cleanly. A
 * second signal while it stops exits at once (130), for the impatient Ctrl-C.
 */
export function untilSignal(onSecond: () => void = () => process.exit(130)): { signal: Promise<NodeJS.Signals>; dispose(): void } {
  let got = false;
  let resolveSignal!: (s: NodeJS.Signals) => void;
  const signal = new Promise<NodeJS.Signals>((r) => (resolveSignal = r));
  const handler = (s: NodeJS.Signals) => {
    if (got) return onSecond();
    got = true;
    resolveSignal(s);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    signal,
    dispose() {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}
