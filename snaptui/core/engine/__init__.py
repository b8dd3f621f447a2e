"""The snapshot engine: workflows as steps with undo, a runner, a journal, detached jobs."""
