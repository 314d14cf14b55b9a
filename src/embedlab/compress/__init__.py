"""What is done to vectors to make them cheaper and searchable: the one spec grammar,
transform chains (reduce, quantise), search indexes, and the budget planner."""
