"""The imperative shell: AWS sessions and clients, the reader and the gather step that
build the current state, the applier that writes, the embedded sandbox, progress."""
