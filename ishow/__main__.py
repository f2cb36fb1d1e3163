from ishow.cli import main

raise SystemExit(main())
