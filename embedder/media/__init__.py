"""Files to safe RGB pictures and their metadata: discover, hash, decode, EXIF, thumbnails, uploads."""
