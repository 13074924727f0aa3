"""The direct hand-over: a new run goes straight to an idle worker on this machine, past
the queue table, and a request waiting for it hears of its end at once. A wing of the
queue, for speed only: with HANDOVER off, no offer is made and no worker listens, and
every run takes the plain path (row, task queue, worker, stored run), which the test
suite passes on too.

- `protocol`: both ends of a hand-over, in the order it happens (offer, claim, answer,
  follow), falling back to the queue table at every step that does not happen;
- `sockets`: the Unix sockets and the messages that carry it;
- `wakeup`: named pipes that wake an idle worker, and a waiting request, at once;
- `waiting`: requests that wait for a run, bounded in number;
- `rendezvous`: where the processes of one machine and database meet.

It may use the models and what is below them, never the rest of the queue.
"""
