-- OpenID tokens (`POST /_matrix/client/v3/user/{userId}/openid/request_token`): short-lived tokens
-- a user hands to a third party, which exchanges one at `/_matrix/federation/v1/openid/userinfo`
-- for the user's id. Stored only as SHA-256 hashes, like access tokens.
CREATE TABLE openid_tokens (
    token_hash  BLOB PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(user_id),
    expires_ts  INTEGER NOT NULL
);
CREATE INDEX openid_tokens_by_expiry ON openid_tokens(expires_ts);
