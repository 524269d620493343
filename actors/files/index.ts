export { checkRealDir, openToAppend, openToRead } from './no-follow.ts';
