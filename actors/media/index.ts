export { thumbnail, thumbnailRaw, imageSize, ThumbnailError, ImageProblem, type ThumbnailBox, type ThumbnailOptions, type RawThumbnail } from './thumbnail.ts';
