export * from './bundle-writer.ts';
export * from './bundle-reader.ts';
export * from './content-chunker.ts';
