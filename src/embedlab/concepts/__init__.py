"""Concepts: a sparse dictionary of an embedding space, named from its texts, that explains
predictions and tracks what rises and falls in new data."""

from embedlab.concepts.concept_set import ConceptSet, fit_concepts
from embedlab.concepts.dictionary import METHODS, ConceptDictionary, SparseCodes, max_atoms
from embedlab.concepts.explain import Explanations, explain_rows, linear_form
from embedlab.concepts.naming import Concept, name_concepts

__all__ = [
    "METHODS",
    "Concept",
    "ConceptDictionary",
    "ConceptSet",
    "Explanations",
    "SparseCodes",
    "explain_rows",
    "fit_concepts",
    "linear_form",
    "max_atoms",
    "name_concepts",
]
