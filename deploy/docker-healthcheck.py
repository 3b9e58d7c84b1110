"""The image's HEALTHCHECK: the web process answers ``/healthz`` on ``$PORT``.

Every container of the image runs it, whatever its role; only the web role serves HTTP,
so a container whose PID 1 is not gunicorn (worker, listener) is reported healthy.
"""

import os
import sys
import urllib.request


def main() -> int:
    try:
        with open("/proc/1/cmdline", "rb") as cmdline:
            if b"gunicorn" not in cmdline.read():
                return 0
    except OSError:
        pass
    url = f"http://127.0.0.1:{os.environ.get('PORT', '5000')}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
