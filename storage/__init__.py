"""The ground floor of the box's state: the SQLite layer every state file uses (`sqlite.py`) and
the lock that gives `storage.dir` one owner (`lock.py`). It imports nothing else of footfall."""
