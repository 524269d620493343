/** How log lines are written: one JSON object each (for machines), or pino-pretty's lines (for people). */
export const LogFormat = { Json: 'json', Pretty: 'pretty' } as const;
export type LogFormat = (typeof LogFormat)[keyof typeof LogFormat];
