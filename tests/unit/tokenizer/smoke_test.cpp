#include <gtest/gtest.h>
#include "engine/tokenizer/tokenizer.h"
TEST(Smoke, Builds) { SUCCEED(); }
