"""``python -m devtools.demo`` (what ``scripts/demo`` runs): the whole system on one machine, watched live.

Starts (or finds) RabbitMQ, the simulators the pipelines' clients talk to, a worker,
the clock and the dashboard, seeds every registered pipeline's sample data and
watches until each has settled, then proves each result and explains every item
that failed for good with its reason and how to requeue it.

The demo names no pipeline. It loads the application's registry and, for each
registered pipeline, imports its *demo part*, ``devtools.demo.parts.<name>`` (the
pipeline's name, else the folder under ``actors/`` that declares it): what the demo
seeds for it, which simulator it needs, how its progress and outcome read. A
pipeline without one is reported as not seeded and does not fail the demo, so a
new pipeline needs no edit here, only (if it wants to be shown) a part of its own.

The units, one job each:

* :mod:`.options`: the command line, checked before anything starts;
* :mod:`.part`: the interface a demo part implements, and what it is handed;
* :mod:`.discovery`: from the registry to the parts;
* :mod:`.infrastructure`: RabbitMQ, the simulators, the processes, the lock;
* :mod:`.messages`: raw publishes, as a service without Dramatiq would;
* :mod:`.snapshot`: one look at every part;
* :mod:`.rendering`: the progress lines and the summary;
* :mod:`.watch`: the loop that shows progress until everything settled;
* :mod:`.runner`: the order of it all, and the exit status.

This package imports nothing heavy, so ``python -m devtools.demo`` can catch Ctrl-C
while the libraries load (see ``__main__``).
"""
