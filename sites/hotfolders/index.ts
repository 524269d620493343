export { bundleFileName, dropFile } from './drop-file.ts';
export { DROP_MODE, RESULT_MODE, ensureHotFolders, hotFolderDirs, type HotFolderDirs } from './layout.ts';
export {
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_SCAN_EVERY_MS,
  HotFolderWatcher,
  isCompleteBundle,
  reasonText,
  type HotFile,
  type HotFolderOptions,
  type HotOutcome,
} from './watcher.ts';
