-- Transactions other servers sent us (`PUT /_matrix/federation/v1/send/{txnId}`), with the answer
-- given, so a transaction sent again (the sender did not see our 200) gets the same answer
-- without being processed twice. The id is unique per origin only.
CREATE TABLE received_transactions (
    origin       TEXT NOT NULL,
    txn_id       TEXT NOT NULL,
    response     TEXT NOT NULL,             -- the JSON body answered
    received_ts  INTEGER NOT NULL,
    PRIMARY KEY (origin, txn_id)
) WITHOUT ROWID;
