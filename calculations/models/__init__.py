from calculations.models.calculations import Calculation, CalculationEvent, CalculationInput
from calculations.models.files import File
from calculations.models.tokens import ApiToken

__all__ = ["ApiToken", "Calculation", "CalculationEvent", "CalculationInput", "File"]
