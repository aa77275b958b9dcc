-- Python stacks of attributed calls (config.python_stacks): an agent sends each distinct
-- stack once (XPU_BATCH_STACKS batches, registered in event_batches like event batches, so a
-- resent one is stored once). An event names its stack by event_data.py_stack, a 64-bit
-- hash unique per monitor: (monitor_id, stack_id) is the stack, depth 0 its innermost frame.
CREATE TABLE py_frames (
    monitor_id  uuid           NOT NULL,
    stack_id    numeric(20, 0) NOT NULL,  -- unsigned 64-bit
    depth       smallint       NOT NULL,
    pid         integer        NOT NULL,
    function    text           NOT NULL,  -- co_qualname
    file        text           NOT NULL,
    line        integer,                  -- NULL: the code has no line there
    flags       integer        NOT NULL,  -- XPU_PY_* (1 truncated, 2 unreadable)
    PRIMARY KEY (monitor_id, stack_id, depth)
);
