"""Native tests of app.py, with the bindings componentize-py generates (see README.md)."""

import unittest

from componentize_py_types import Err

import app


class TestApp(unittest.TestCase):
    def test_greets(self):
        self.assertEqual(app.WitWorld().greet("Ada"), "Hello, Ada!")

    def test_divides_or_says_why_not(self):
        task = app.WitWorld()
        self.assertEqual(task.divide(7, 2), 3)
        self.assertEqual(task.divide(-9, 2), -4)
        with self.assertRaises(Err) as caught:
            task.divide(1, 0)
        self.assertEqual(caught.exception.value, "cannot divide 1 by zero")


if __name__ == "__main__":
    unittest.main()
