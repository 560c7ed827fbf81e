"""The WebSocket servers the ``ws-*`` suites measure, one module per framework.

Each offers the same three endpoints, so one load generator drives them all:

* an echo endpoint that sends every text frame straight back;
* a room endpoint ``/room/NAME/`` whose members receive every text frame any member
  sends (the sender included), for the fan-out scenarios.

``chanlite_echo`` runs under ``chanlite serve``, the other two under plain uvicorn.
"""
