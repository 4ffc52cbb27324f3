"""Optimizers and learning-rate schedules.

* ``SGD`` (momentum, Nesterov, weight decay) and ``Adam``, both built on ``Optimizer``
  (in ``sgd.py``): in-place updates of ``p.data``, then ``p.after_step()`` so parameter
  transforms (pruning masks, binary-weight clipping) act after every step.
* ``StepLR``, ``ExponentialLR``, ``CosineAnnealingLR``: set ``opt.lr`` once per epoch.

Typical loop::

    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = optim.StepLR(opt, step_size=5, gamma=0.5)
    for epoch in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        sched.step()
"""
from .adam import Adam
from .schedulers import CosineAnnealingLR, ExponentialLR, LRScheduler, StepLR
from .sgd import SGD, Optimizer

__all__ = ["Optimizer", "SGD", "Adam", "LRScheduler", "StepLR", "ExponentialLR", "CosineAnnealingLR"]
