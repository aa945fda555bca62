"""Data: effect sizes and their measures, studies, moderators and the design builder."""
