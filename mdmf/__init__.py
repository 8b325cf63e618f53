"""The few-shot models of mdmf: pure modules on tensors, no I/O."""
