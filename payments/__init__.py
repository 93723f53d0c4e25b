"""Payment Service: tokenised payment methods and charges; charge and refund."""
