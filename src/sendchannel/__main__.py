"""``python -m sendchannel``: the command line."""

from sendchannel._cli import main

raise SystemExit(main())
