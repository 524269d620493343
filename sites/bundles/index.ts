export * from './bundle-writer.ts';
export * from './bundle-reader.ts';
export * from './content-chunker.ts';
export * from './result-crypto.ts';
