"""``python -m cloudseg.data.simulate``: the ``cloudfree-simulate`` command."""

from cloudseg.data.simulate.cli import main

raise SystemExit(main())
