"""The soak-and-leak run: ``python -m bench.soak`` from the repository root.

Not a benchmark suite (``python -m bench`` does not run it) and not part of CI or
the tests: a real ``chanlite serve`` of a small chat app (:mod:`bench.soak.app`)
holds 10,000 WebSockets from the Node load generator (``bench/node/soak.mjs``) for
10 minutes while 1% of them chat, and the run checks that memory, file descriptors
and asyncio tasks stay flat, that every message reaches every member of its room,
and that closing the sockets leaves nothing behind.

* :mod:`bench.soak.deployment` starts the server (``memory://``, or Redis with
  ``chanlite worker`` processes) and raises the open-file limit;
* :mod:`bench.soak.load` drives the load generator;
* :mod:`bench.soak.probe` samples the server's processes and Redis;
* :mod:`bench.soak.judge` decides; :mod:`bench.soak.report` prints and writes the
  "Soak and leaks" section of ``docs/reliability.md``.
"""
