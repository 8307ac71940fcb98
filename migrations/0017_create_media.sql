-- The media repository. Files live on disk under `data_dir/media`, named by the SHA-256 of their
-- content, so identical uploads share one file; these tables say which media ids (local uploads
-- and cached copies of other servers' media) point at which file.

CREATE TABLE media (
    origin        TEXT NOT NULL,              -- the server name of the mxc:// URI
    media_id      TEXT NOT NULL,
    sha256        TEXT,                       -- hex; NULL while an asynchronous upload is pending
    size          INTEGER,                    -- bytes; NULL while pending
    content_type  TEXT,
    filename      TEXT,
    uploader      TEXT,                       -- the local user who uploaded or created it
    created_ts    INTEGER NOT NULL,
    expires_ts    INTEGER,                    -- a pending id unused after this is forgotten
    quarantined   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (origin, media_id)
);
CREATE INDEX media_by_uploader ON media(uploader, created_ts);
CREATE INDEX media_by_sha256 ON media(sha256);

-- Thumbnails of a media item, one per size and method; their files are content-addressed too.
CREATE TABLE media_thumbnails (
    origin        TEXT NOT NULL,
    media_id      TEXT NOT NULL,
    width         INTEGER NOT NULL,           -- the size asked for (a standard size)
    height        INTEGER NOT NULL,
    method        TEXT NOT NULL,              -- 'crop' or 'scale'
    sha256        TEXT NOT NULL,
    size          INTEGER NOT NULL,
    content_type  TEXT NOT NULL,
    PRIMARY KEY (origin, media_id, width, height, method)
);
CREATE INDEX media_thumbnails_by_sha256 ON media_thumbnails(sha256);
