"""Training: supervised fine-tuning (sft), and later reward models and policy gradient on TRL."""
