/* cli.h -- the `xbar` command: table-driven flags and the subcommands.  Commands only parse flags,
 * call library functions and print; all logic lives in the library. */
#ifndef XB_CLI_H
#define XB_CLI_H
#include "xbar.h"
#include "xb_xbar.h"

typedef enum { XF_STR = 0, XF_INT, XF_DOUBLE, XF_BOOL, XF_CHOICE } xf_type;

typedef struct xf_flag {
    const char *name;     /* "epochs" for --epochs */
    xf_type type;
    const char *def;      /* default as text, NULL: none (required or optional-without-default) */
    const char *range;    /* INT/DOUBLE: "lo..hi" (either side may be empty); CHOICE: "a|b|c" */
    const char *help;
    int required;
    /* filled by xf_parse */
    int set;
    const char *s;        /* STR/CHOICE value (or default) */
    long i;               /* INT value; BOOL 0/1; CHOICE index */
    double d;             /* DOUBLE value */
} xf_flag;

/* Parses argv (after the subcommand).  Returns 0 on success, 1 if --help was printed, 2 on a usage
 * error (message printed to stderr with a hint).  Flags take "--name value" or "--name=value"; BOOL
 * flags take no value ("--json"). */
int xf_parse(const char *cmd, const char *summary, xf_flag *flags, int n, int argc, char **argv);
void xf_usage(FILE *f, const char *cmd, const char *summary, const xf_flag *flags, int n);
xf_flag *xf_get(xf_flag *flags, int n, const char *name);

/* Prints "xbar CMD: error: <last error>" and returns 1 (for `return cli_fail("train")`). */
int cli_fail(const char *cmd);
/* all cores (OpenMP's count), 1 without OpenMP */
int cli_default_threads(void);

/* A quantized model's per-layer precisions on the crossbars of hw (prec: xb_model_n_mapped entries; *any = 1
 * when some layer differs from the config's), read from the model's text (docs/quantization.md). */
int cli_model_precisions(const char *model, const xb_model *m, const xb_hw *hw, xb_layer_precision *prec, int *any);

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_infer(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_solve(int argc, char **argv);
int cmd_energy(int argc, char **argv);
int cmd_neat(int argc, char **argv);
#endif
