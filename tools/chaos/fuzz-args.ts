/** `--cases N [--seed S]` of the fuzzers' own commands: the numbers, or null when either is not a whole number (cases ≥ 1). */
export function casesAndSeed(values: { cases?: string; seed?: string }): { cases: number; seed?: number } | null {
  const cases = Number(values.cases);
  const seed = values.seed === undefined ? undefined : Number(values.seed);
  if (!Number.isInteger(cases) || cases < 1 || (seed !== undefined && !Number.isInteger(seed))) return null;
  return { cases, ...(seed !== undefined ? { seed } : {}) };
}
