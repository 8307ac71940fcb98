"""Drives a Plexus server with matrix-nio, a third-party Python Matrix client: registration,
login, whoami, profile, devices, a refused login and logout. Prints one line per step and exits
non-zero on the first step that does not behave as a client expects."""

import asyncio
import sys

import nio


def check(step, ok, detail):
    print(f"{step}: {'ok' if ok else 'FAILED'} ({detail})", flush=True)
    if not ok:
        sys.exit(1)


async def main(base_url):
    first = nio.AsyncClient(base_url, "nurse")
    r = await first.register("nurse", "a long enough password", "nio-first")
    check("register", isinstance(r, nio.RegisterResponse), r)
    check("register user id", r.user_id == "@nurse:localhost", r.user_id)
    await first.close()

    client = nio.AsyncClient(base_url, "@nurse:localhost")
    r = await client.login("a long enough password", device_name="ward laptop")
    check("login", isinstance(r, nio.LoginResponse), r)
    device_id = r.device_id

    r = await client.whoami()
    check("whoami", isinstance(r, nio.WhoamiResponse) and r.user_id == "@nurse:localhost", r)

    r = await client.set_displayname("Nurse Joy")
    check("set displayname", isinstance(r, nio.ProfileSetDisplayNameResponse), r)
    r = await client.get_displayname()
    check("get displayname", getattr(r, "displayname", None) == "Nurse Joy", r)

    r = await client.devices()
    ids = [d.id for d in getattr(r, "devices", [])]
    check("devices", isinstance(r, nio.DevicesResponse) and device_id in ids and len(ids) == 2, ids)
    names = {d.id: d.display_name for d in r.devices}
    check("device name", names.get(device_id) == "ward laptop", names)

    r = await client.login("not the password")
    check("wrong password refused", isinstance(r, nio.LoginError) and r.status_code == "M_FORBIDDEN", r)

    r = await client.logout()
    check("logout", isinstance(r, nio.LogoutResponse), r)
    r = await client.whoami()
    check("token dead after logout", isinstance(r, nio.WhoamiError), r)
    await client.close()


asyncio.run(main(sys.argv[1]))
