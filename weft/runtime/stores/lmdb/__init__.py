"""The LMDB backend of the store port (store.py, txn.py), its key schema (keys.py), record codec and queries."""
