"""Shared by the tests that compare a head with its authors' computation written out by hand (float64)."""

import torch


def shuffled_supports(support: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One episode's support `(N, K, T, D)` as the authors' code receives it: `(N·K, T, D)` in a random class
    order, with the labels `(N·K,)` of the rows."""
    N, K = support.shape[:2]
    order = torch.randperm(N * K, generator=generator)
    return support.reshape(N * K, *support.shape[2:])[order], torch.arange(N).repeat_interleave(K)[order]


def assert_same_computation(logits, theirs_logits, loss, theirs_loss, leaves, tol: float = 1e-10) -> None:
    """Logits, loss and the gradient of the loss with respect to every leaf (inputs and parameters) agree."""
    torch.testing.assert_close(logits, theirs_logits, rtol=tol, atol=tol)
    torch.testing.assert_close(loss, theirs_loss, rtol=tol, atol=tol)
    for a, b in zip(torch.autograd.grad(loss, leaves), torch.autograd.grad(theirs_loss, leaves), strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
