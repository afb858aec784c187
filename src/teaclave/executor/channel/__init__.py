"""The channel between the trusted executor and a sandboxed function: framing, both ends.

The trusted end (:mod:`.server`) serves the task's files from the runtime; the sandboxed
end (:mod:`.client`) asks for them. Python and Wasm functions use the same channel.
"""
