# sequin_upsert: PGXS build of a C++17 extension.
EXTENSION  = sequin_upsert
MODULE_big = sequin_upsert
# src/ is laid out by layer (see the README's "Code map"): every .cpp below it is built.
SOURCES = $(sort $(wildcard src/*/*.cpp))
OBJS = $(SOURCES:.cpp=.o)

DATA = $(wildcard sql/sequin_upsert--*.sql)

# pg_regress inputs are sql/regress_*.sql, their outputs expected/regress_*.out (the
# install scripts sql/sequin_upsert--*.sql share sql/).
REGRESS = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/regress_*.sql)))
REGRESS_OPTS = --inputdir=. --load-extension=sequin_upsert

PG_CONFIG ?= pg_config
PG_INCLUDE_SERVER := $(shell $(PG_CONFIG) --includedir-server)

# No LLVM bitcode: the JIT cannot inline C++ and clang need not be installed.
override with_llvm = no

PG_CXXFLAGS = -std=c++17 -fPIC -Wall -Wextra -Wshadow -Wno-unused-parameter -Wno-missing-field-initializers \
	-isystem $(PG_INCLUDE_SERVER) -Isrc
ifeq ($(SEQUIN_WERROR),1)
PG_CXXFLAGS += -Werror
endif
SHLIB_LINK = -lstdc++
# Rebuild objects when a header they include changes.
PG_CXXFLAGS += -MMD -MP
EXTRA_CLEAN = $(OBJS:.o=.d)

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)


-include $(OBJS:.o=.d)

FORMATTED = $(SOURCES) $(sort $(wildcard src/*/*.hpp)) $(wildcard test/libfuzzer/*.cpp)

format:
	clang-format -i $(FORMATTED)

format-check:
	clang-format --dry-run --Werror $(FORMATTED)

.PHONY: format format-check

# Every source compiled against the PostgreSQL 17 and 18 server headers (fetched from the
# Debian archive, nothing installed) and the installed server's, warnings as errors.
compat-check:
	bash test/compat/check.sh

.PHONY: compat-check

# The regression suite with every backend under valgrind (slow: minutes).
valgrind-check:
	bash test/valgrind/run

.PHONY: valgrind-check
