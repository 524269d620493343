export { checkRealDir, ensureRealDir, openToAppend, openToRead } from './no-follow.ts';
