#!/bin/sh
# The image's entrypoint: `web`, `worker`, `release` or `listener` runs that process of the
# Procfile, read from the Procfile itself (one list of commands for Heroku, Dokku, Docker,
# Fly.io: the image cannot drift from what a buildpack platform runs). Anything else runs
# as given: `docker compose run --rm web callhook admin link ops@example.com`.
set -eu

procfile="$(dirname "$0")/../Procfile"

if [ "$#" -eq 0 ]; then
  echo "usage: $0 web|worker|release|listener, or a command (callhook …)" >&2
  exit 64
fi

if [ "$#" -eq 1 ]; then
  case "$1" in
    "" | *[!a-z0-9_-]*) ;;
    *)
      command=$(sed -n "s/^$1:[[:space:]]*//p" "$procfile" | head -n 1)
      if [ -n "$command" ]; then
        # A shell expands the Procfile's ${WORKER_CONCURRENCY:-2}, as Heroku's does; exec
        # leaves gunicorn or celery as PID 1, so they receive the stop signal.
        exec /bin/sh -c "exec $command"
      fi
      ;;
  esac
fi

exec "$@"
