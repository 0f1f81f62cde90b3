"""edgectl: the EdgeFleet operator CLI.

A thin client of the fleet server's REST API (docs/api.md) plus the local commands ``compile``,
``profiles`` and ``toolchains``. The entry point is :func:`edgectl.main.run`; commands live one per
file under :mod:`edgectl.commands` and receive an :class:`edgectl.app.Application`.

Layout::

    main.py       root command, global options, EdgectlError -> app.abort
    app.py        Application: config, API client, terminal, abort(message, code)
    terminal.py   the only writer to stdout/stderr (tables, JSON, progress, live views)
    config.py     --server/--token, EDGEFLEET_* variables, the config file
    client.py     FleetClient over httpx; httpx errors translated here, once
    errors.py     EdgectlError tree
    watch.py      when `deploy --wait` stops, and what failed (pure)
    views/        data -> Rich renderables (pure)
    commands/     one command per file; groups' __init__.py only wire
"""
