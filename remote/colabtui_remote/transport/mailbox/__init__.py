"""Wire protocol v1 through files in a folder, for runtimes that take no inbound connection:
:mod:`.layout` (the files, and a plain or mounted folder as storage), :mod:`.drive_storage` (the
same layout on Drive through its API), :mod:`.server` (the runtime's side), :mod:`.serve`
(starting one for a run)."""
