export * from './format-string.ts';
export * from './parameters.ts';
export * from './parse.ts';
export * from './problems.ts';
export * from './range-expr.ts';
export type { EmbeddedFileOut } from './embedded-files.ts';
export * from './to-jobs.ts';
