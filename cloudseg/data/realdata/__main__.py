from cloudseg.data.realdata.cli import main

raise SystemExit(main())
