export { MAX_QUOTES_IN_FLIGHT, serveQuotes, type QuoteServiceOptions } from './quote-service.ts';
export { serveQuoteAsker, type QuoteAskerOptions } from './quote-asker.ts';
export { FileHashes } from './file-hashes.ts';
