"""Training every model from the corpus: one loop and one recipe runner (``loop``), one recipe per
model beside it, the table of trainers `python -m engine train` reads (``trainers``), the token
caches the stage LMs learn from (``tokens``) and the chains that retrain several models in order
(``pipeline``). Nothing is imported here, so that the command line's parser can list the chains
without loading the recipes."""
