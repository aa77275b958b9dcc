"""What the tests read traces back with, kept out of the runtime packages: the Perfetto and
Chrome JSON validators (validate.py, validate_chrome.py) and Perfetto's own trace processor
under Node (trace_processor.py, trace_processor.cjs). No runtime module imports them
(tests/test_layers.py), and every runtime module imports without them and without the
test extra's perfetto in an installed wheel (tests/test_wheel.py)."""
