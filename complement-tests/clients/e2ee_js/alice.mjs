// Alice, as matrix-js-sdk with its Rust crypto (the WebAssembly build of matrix-sdk-crypto) sees
// her: she logs in on a new device, starts the client with end-to-end encryption, sends an
// encrypted text into an encrypted room she shares with Bob, and waits for Bob's encrypted answer,
// which her library must decrypt.
//
// Usage: node alice.mjs BASE_URL USER_ID PASSWORD ROOM_ID PEER_USER_ID TEXT
//
// It speaks to the test on stdout with lines starting with "@@ " ("@@ device ID", "@@ sent
// EVENT_ID", "@@ decrypted BODY" and "@@ peer-devices [{device_id, curve25519, ed25519}]" as
// JSON); everything else on stdout and stderr is the library's
// log. It exits with status 0 after printing the decrypted answer, 1 on any failure, 2 after
// 50 seconds without an answer.

import * as sdk from "matrix-js-sdk";
import { logger } from "matrix-js-sdk/lib/logger.js";

const [baseUrl, userId, password, roomId, peerUserId, text] = process.argv.slice(2);
const say = (what, value) => console.log(`@@ ${what} ${value}`);
logger.setLevel(process.env.PLEXUS_TEST_JS_LOG ?? "warn");

setTimeout(() => {
    console.error("no decrypted answer from the peer within 50 s");
    process.exit(2);
}, 50_000).unref();

async function main() {
    const login = await sdk.createClient({ baseUrl }).loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: userId },
        password,
        initial_device_display_name: "matrix-js-sdk interop",
    });
    const client = sdk.createClient({
        baseUrl,
        userId: login.user_id,
        deviceId: login.device_id,
        accessToken: login.access_token,
    });
    await client.initRustCrypto({ useIndexedDB: false });
    const crypto = client.getCrypto();
    // Bob's device is not verified (no cross-signing here): send to it all the same.
    crypto.globalBlacklistUnverifiedDevices = false;
    say("device", login.device_id);

    // The answer may be decrypted as soon as its event arrives, or later, once its room key
    // arrives by to-device message: listen for both before syncing.
    const answered = new Promise((resolve) => {
        const check = (event) => {
            if (
                event.getRoomId() === roomId &&
                event.getSender() === peerUserId &&
                event.isEncrypted() &&
                !event.isDecryptionFailure() &&
                event.getType() === "m.room.message"
            ) {
                resolve(event);
            }
        };
        client.on(sdk.MatrixEventEvent.Decrypted, check);
    });

    const prepared = new Promise((resolve, reject) => {
        client.on(sdk.ClientEvent.Sync, (state, _previous, data) => {
            if (state === "PREPARED") resolve();
            if (state === "ERROR") reject(data?.error ?? new Error("sync error"));
        });
    });
    await client.startClient({ initialSyncLimit: 20 });
    await prepared;
    if (!(await crypto.isEncryptionEnabledInRoom(roomId))) {
        throw new Error(`${roomId} is not an encrypted room for the library`);
    }

    const sent = await client.sendMessage(roomId, { msgtype: "m.text", body: text });
    say("sent", sent.event_id);

    const answer = await answered;
    say("decrypted", JSON.stringify(answer.getContent().body));

    // The peer's devices as the library knows them from /keys/query.
    const devices = (await crypto.getUserDeviceInfo([peerUserId])).get(peerUserId) ?? new Map();
    const known = [...devices.values()].map((device) => ({
        device_id: device.deviceId,
        curve25519: device.getIdentityKey(),
        ed25519: device.getFingerprint(),
    }));
    say("peer-devices", JSON.stringify(known));
    client.stopClient();
    process.exit(0);
}

main().catch((error) => {
    console.error("matrix-js-sdk failed:", error);
    process.exit(1);
});
