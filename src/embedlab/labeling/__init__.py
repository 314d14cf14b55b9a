"""Labels where they count: which texts to label next (:func:`suggest`), what each strategy
would have bought (:func:`simulate_labeling`), which given labels look wrong
(:func:`label_issues`), and whether more labels would pay (:func:`learning_curve`)."""

from embedlab.labeling.suggest import STRATEGIES, Suggestions, suggest

__all__ = ["STRATEGIES", "Suggestions", "suggest"]
