"""Distributed runs on ``torch.distributed`` (``torchrun``; DDP, FSDP2): one voice for the job.

- :mod:`.ranks`: where this process stands (global and local rank, world size, node);
- :mod:`.collectives`: the job's own gloo groups, and the flags agreed at each boundary;
- :mod:`.job_saver`: saves and stops made by every rank at the same step;
- :mod:`.sharded`: DTensor state (FSDP2) as ``torch.distributed.checkpoint`` folders;
- :mod:`.watchdog`: heartbeats, and which rank was lost;
- :mod:`.job`: the Monitor's job, orchestrating them.

Nothing here imports torch at import time; a Monitor outside a job of 2+ processes never
touches this wing beyond :func:`.ranks.detect_ranks`.
"""
