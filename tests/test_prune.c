/* test_prune.c -- channel surgery: the pruned model's logits equal the masked unpruned model's (a VGG-style
 * CNN, resnet20's inner block channels, and a residual network with 1x1 shortcuts pruned consistently across
 * its residual sums), in eval and training mode; the maps carry every kept element; residual sums and
 * option-A shortcuts refuse what they cannot express; the channel groups pruning removes together.  The
 * scores, LRP and the schedule: test_pscore.c. */
#include "testutil.h"

static const char vgg_cfg[] = "[net]\nname = v\ninput = 3x16x16\nclasses = 5\n"
                              "[conv2d c1]\nout_channels = 8\nkernel = 3\npadding = 1\n[batchnorm b1]\n[relu r1]\n"
                              "[conv2d c2]\nout_channels = 12\nkernel = 3\npadding = 1\nbias = true\n[batchnorm b2]\n"
                              "[relu r2]\n[maxpool p2]\nkernel = 2\n"
                              "[conv2d c3]\nout_channels = 6\nkernel = 3\npadding = 1\n[relu r3]\n[maxpool p3]\nkernel = 2\n"
                              "[flatten f]\n[linear fc1]\nout_features = 7\n[relu r4]\n[linear fc2]\nout_features = 5\n";

/* random ascending subset of 0..n-1 of size k */
static int *subset_(xb_rng *r, int n, int k) {
    int *s = malloc(sizeof(int) * (size_t)n), *o = malloc(sizeof(int) * (size_t)k);
    for (int i = 0; i < n; i++) s[i] = i;
    for (int i = 0; i < k; i++) {
        int j = i + (int)xb_rng_below(r, (uint64_t)(n - i));
        int t = s[i]; s[i] = s[j]; s[j] = t;
    }
    for (int i = 0; i < k; i++) o[i] = s[i];
    for (int i = 1; i < k; i++)
        for (int j = i; j > 0 && o[j - 1] > o[j]; j--) { int t = o[j]; o[j] = o[j - 1]; o[j - 1] = t; }
    free(s);
    return o;
}

/* zeroes what the pruned model does not have: the pruned convolutions' weight rows and bias, and the
 * batchnorm affine (gamma, beta) that follows them, so that the pruned channels are 0 after the relu */
static void mask_(xb_model *m, int **keep, const int *nk) {
    float *pv = xb_model_params(m);
    for (int i = 0; i < xb_model_n_mapped(m); i++) {
        if (!keep[i]) continue;
        const char *name;
        int param, ro, k;
        xb_model_mapped_info(m, i, &name, &param, &ro, &k);
        uint8_t *kept = calloc((size_t)ro, 1);
        for (int j = 0; j < nk[i]; j++) kept[keep[i][j]] = 1;
        const xb_param *w = xb_model_param(m, param);
        char nb[160];
        snprintf(nb, sizeof nb, "%s.bias", name);
        const xb_param *b = xb_model_find_param(m, nb);
        /* the batchnorm right after it, if any */
        const xb_param *g = NULL, *be = NULL;
        for (int n = 0; n + 1 < xb_model_n_nodes(m); n++)
            if (!strcmp(xb_model_node_name(m, n), name) && !strcmp(xb_model_node_type(m, n + 1), "batchnorm")) {
                char pg[160], pb[160];
                snprintf(pg, sizeof pg, "%s.weight", xb_model_node_name(m, n + 1));
                snprintf(pb, sizeof pb, "%s.bias", xb_model_node_name(m, n + 1));
                g = xb_model_find_param(m, pg);
                be = xb_model_find_param(m, pb);
            }
        for (int o = 0; o < ro; o++) {
            if (kept[o]) continue;
            memset(pv + w->offset + (size_t)o * k, 0, sizeof(float) * (size_t)k);
            if (b) pv[b->offset + o] = 0;
            if (g) { pv[g->offset + o] = 0; pv[be->offset + o] = 0; }
        }
        free(kept);
    }
}

/* logits of the masked full model and of the pruned one, eval and training mode */
static void compare_(const char *text, int **keep, const int *nk, int n, double tol) {
    xb_model *m, *p;
    assert_int_equal(xb_model_load_text(text, strlen(text), "m.cfg", 5, &m), XB_OK);
    /* non-trivial batchnorm statistics */
    float *bv = xb_model_buffers(m);
    xb_rng r;
    xb_rng_seed(&r, 3, "bn");
    for (int i = 0; i < xb_model_n_params(m); i++) {
        const xb_param *q = xb_model_param(m, i);
        if (q->trainable || q->ndim != 1) continue;
        for (int64_t j = 0; j < q->numel; j++)
            bv[q->offset + j] = strstr(q->name, "var") ? (float)(0.5 + xb_rng_uniform(&r)) : (float)(0.2 * xb_rng_normal(&r));
    }
    char *pt;
    int64_t *pm, *bm;
    if (xb_model_prune(m, text, "m.cfg", (const int *const *)keep, nk, &p, &pt, &pm, &bm) != XB_OK)
        fail_msg("prune: %s", xb_last_error());
    assert_true(xb_model_n_trainable(p) < xb_model_n_trainable(m));
    for (int64_t j = 0; j < xb_model_n_trainable(p); j++) assert_true(xb_model_params(p)[j] == xb_model_params(m)[pm[j]]);
    for (int64_t j = 0; j < xb_model_n_buffer(p); j++) assert_true(xb_model_buffers(p)[j] == xb_model_buffers(m)[bm[j]]);
    /* the pruned model's text builds the same model */
    xb_model *p2;
    assert_int_equal(xb_model_load_text(pt, strlen(pt), "pruned.cfg", 1, &p2), XB_OK);
    assert_int_equal(xb_model_n_trainable(p2), xb_model_n_trainable(p));
    xb_model_free(p2);
    mask_(m, keep, nk);
    int c, h, w;
    xb_model_input_shape(m, &c, &h, &w);
    const int cl = xb_model_classes(m);
    float *x = malloc(sizeof(float) * (size_t)n * c * h * w), *l1 = malloc(sizeof(float) * (size_t)n * cl),
          *l2 = malloc(sizeof(float) * (size_t)n * cl);
    for (int i = 0; i < n * c * h * w; i++) x[i] = (float)xb_rng_normal(&r);
    for (int mode = 0; mode < 2; mode++) {
        for (int q = 0; q < 2; q++) {
            xb_model *mm = q ? p : m;
            assert_int_equal(xb_model_set_batch(mm, n), XB_OK);
            xb_model_train_mode(mm, mode);
            assert_int_equal(xb_model_forward(mm, n, x, q ? l2 : l1, NULL), XB_OK);
        }
        double e = 0, rr = 0;
        for (int i = 0; i < n * cl; i++) { e = fmax(e, fabs(l1[i] - l2[i])); rr = fmax(rr, fabs(l1[i])); }
        if (getenv("XBT_VERBOSE")) fprintf(stderr, "  %s mode: %.2e\n", mode ? "training" : "eval", e / rr);
        if (!(e / rr < tol)) fail_msg("%s mode: pruned vs masked logits %.2e", mode ? "training" : "eval", e / rr);
    }
    free(x); free(l1); free(l2); free(pt); free(pm); free(bm);
    xb_model_free(p);
    xb_model_free(m);
}

static void test_vgg(void **state) {
    (void)state;
    xb_rng r;
    xb_rng_seed(&r, 1, "keep");
    int *keep[5] = {subset_(&r, 8, 5), subset_(&r, 12, 4), subset_(&r, 6, 3), NULL, NULL}, nk[5] = {5, 4, 3, 0, 0};
    compare_(vgg_cfg, keep, nk, 6, 1e-5);
    for (int i = 0; i < 3; i++) free(keep[i]);
}

/* resnet20: every block's inner channels (conv1), the outer ones left alone */
static void test_resnet20(void **state) {
    (void)state;
    xb_model *m;
    assert_int_equal(xb_model_load("resnet20", 1, &m), XB_OK);
    const int nm = xb_model_n_mapped(m);
    int **keep = calloc((size_t)nm, sizeof *keep), *nk = calloc((size_t)nm, sizeof *nk);
    xb_rng r;
    xb_rng_seed(&r, 2, "keep");
    for (int i = 0; i < nm; i++) {
        const char *name;
        int ro;
        xb_model_mapped_info(m, i, &name, NULL, &ro, NULL);
        if (!strstr(name, ".conv1")) continue;
        nk[i] = ro / 2 + (int)xb_rng_below(&r, (uint64_t)(ro / 4));
        keep[i] = subset_(&r, ro, nk[i]);
    }
    xb_model_free(m);
    compare_(xb_zoo_cfg("resnet20"), keep, nk, 4, 1e-5);
    /* an outer channel: the residual sum's two sides differ */
    int l10 = -1, l1conv2 = -1;
    assert_int_equal(xb_model_load("resnet20", 1, &m), XB_OK);
    for (int i = 0; i < nm; i++) {
        const char *name;
        xb_model_mapped_info(m, i, &name, NULL, NULL, NULL);
        if (!strcmp(name, "layer1.0.conv2")) l1conv2 = i;
        if (!strcmp(name, "layer1.0.conv1")) l10 = i;
    }
    int *k2[32] = {0}, n2[32] = {0};
    int half[8] = {0, 2, 4, 6, 8, 10, 12, 14};
    k2[l1conv2] = half;
    n2[l1conv2] = 8;
    xb_model *p;
    xb_status st = xb_model_prune(m, xb_zoo_cfg("resnet20"), "zoo:resnet20.cfg", (const int *const *)k2, n2, &p, NULL,
                                  NULL, NULL);
    xbt_assert_error(st, XB_ERR_ARG, "layer1.0.add", "residual");
    /* all of stage 1's outer channels alike: the stage-2 option-A shortcut cannot follow */
    for (int i = 0; i < nm; i++) {
        const char *name;
        xb_model_mapped_info(m, i, &name, NULL, NULL, NULL);
        if (!strcmp(name, "conv1") || (!strncmp(name, "layer1.", 7) && strstr(name, ".conv2"))) { k2[i] = half; n2[i] = 8; }
    }
    st = xb_model_prune(m, xb_zoo_cfg("resnet20"), "zoo:resnet20.cfg", (const int *const *)k2, n2, &p, NULL, NULL, NULL);
    xbt_assert_error(st, XB_ERR_UNSUPPORTED, "layer2.0.shortcut", "option-A");
    /* a list that is not ascending */
    int bad[3] = {3, 1, 2};
    memset(k2, 0, sizeof k2);
    k2[l10] = bad;
    n2[l10] = 3;
    st = xb_model_prune(m, xb_zoo_cfg("resnet20"), "zoo:resnet20.cfg", (const int *const *)k2, n2, &p, NULL, NULL, NULL);
    xbt_assert_error(st, XB_ERR_ARG, "layer1.0.conv1", "ascending");
    xb_model_free(m);
    for (int i = 0; i < nm; i++) free(keep[i]);
    free(keep); free(nk);
}

/* A training checkpoint rewritten for the pruned model: its parameters, the optimizer moments through the
 * map, the data order and streams as they were, the model's text; a run resumed from it continues with the
 * pruned model. */
static void test_checkpoint(void **state) {
    (void)state;
    static const char cfg[] = "[net]\ninput = 3x8x8\nclasses = 10\n[conv2d c1]\nout_channels = 6\nkernel = 3\npadding = 1\n"
                              "[batchnorm b1]\n[relu r1]\n[maxpool p]\nkernel = 2\n[flatten f]\n[linear fc]\n"
                              "out_features = 10\n";
    xb_model *m;
    assert_int_equal(xb_model_load_text(cfg, sizeof cfg - 1, "c.cfg", 1, &m), XB_OK);
    xb_dataset tr = xbt_synthetic_cifar(64);
    tr.h = tr.w = 8;
    xb_train_opts o = xb_train_opts_default();
    char out[512], ck[600];
    snprintf(out, sizeof out, "%s/ckprune", xbt_tmpdir());
    o.epochs = 2; o.batch = 16; o.threads = 1; o.progress = 0; o.out_dir = out; o.steps = 6; o.optimizer = XB_OPT_ADAM;
    xb_train_result r;
    assert_int_equal(xb_train(m, &tr, NULL, &o, &r), XB_OK);
    snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", out);
    xb_safetensors before, after;
    assert_int_equal(xb_st_load(ck, &before), XB_OK);
    int keep[3] = {0, 2, 5}, n_keep[2] = {3, 0};
    const int *kp[2] = {keep, NULL};
    xb_model *p;
    char *pt;
    int64_t *pm;
    assert_int_equal(xb_model_prune(m, cfg, "c.cfg", kp, n_keep, &p, &pt, &pm, NULL), XB_OK);
    assert_int_equal(xb_checkpoint_prune(ck, p, pm, pt), XB_OK);
    assert_int_equal(xb_st_load(ck, &after), XB_OK);
    for (int k = 0; k < 2; k++) {
        const char *nm = k ? "__optim.v" : "__optim.m";
        const xb_tensor *a = xb_st_get(&after, nm), *b = xb_st_get(&before, nm);
        assert_non_null(a);
        assert_int_equal(xb_tensor_numel(a), xb_model_n_trainable(p));
        for (int64_t j = 0; j < xb_tensor_numel(a); j++)
            assert_true(((const float *)a->data)[j] == ((const float *)b->data)[pm[j]]);
    }
    assert_memory_equal(xb_st_get(&after, "__perm")->data, xb_st_get(&before, "__perm")->data, sizeof(int64_t) * 64);
    assert_string_equal(xb_st_meta(&after, "epoch"), xb_st_meta(&before, "epoch"));
    char *text;
    assert_int_equal(xb_checkpoint_model_text(ck, &text), XB_OK);
    assert_string_equal(text, pt);
    /* the pruned model resumes from it (and would refuse the unpruned one) */
    xb_model *q;
    assert_int_equal(xb_model_load_text(text, strlen(text), "c.cfg", 1, &q), XB_OK);
    o.steps = 0; o.resume = ck; o.model_cfg = text;
    if (xb_train(q, &tr, NULL, &o, &r) != XB_OK) fail_msg("resume: %s", xb_last_error());
    assert_int_equal(r.epochs_total, 2);
    xb_model *m2;
    assert_int_equal(xb_model_load_text(cfg, sizeof cfg - 1, "c.cfg", 1, &m2), XB_OK);
    o.steps = 0;
    xb_status st2 = xb_train(m2, &tr, NULL, &o, &r);
    if (st2 == XB_OK || !strstr(xb_last_error(), "c1.weight")) fail_msg("the unpruned model took the pruned checkpoint: %s",
                                                                       xb_last_error());
    free(text); free(pt); free(pm);
    xb_st_free(&before); xb_st_free(&after);
    xb_model_free(q); xb_model_free(p); xb_model_free(m); xb_model_free(m2);
    xb_dataset_free(&tr);
}

/* a residual network with 1x1 convolution shortcuts: the stream's channels are one group of several producers */
static const char res_cfg[] =
    "[net]\nname = r\ninput = 3x8x8\nclasses = 4\n"
    "[conv2d stem]\nout_channels = 6\nkernel = 3\npadding = 1\nbias = false\n[batchnorm sb]\n[relu sr]\n"
    "[conv2d b1c1]\nout_channels = 5\nkernel = 3\npadding = 1\nbias = false\n[batchnorm b1b1]\n[relu b1r1]\n"
    "[conv2d b1c2]\nout_channels = 6\nkernel = 3\npadding = 1\nbias = false\n[batchnorm b1b2]\n"
    "[add b1add]\ninputs = b1b2, sr\n[relu b1r]\n"
    "[conv2d b2c1]\nout_channels = 5\nkernel = 3\npadding = 1\nbias = false\n[batchnorm b2b1]\n[relu b2r1]\n"
    "[conv2d b2c2]\nout_channels = 8\nkernel = 3\npadding = 1\nstride = 2\nbias = false\n[batchnorm b2b2]\n"
    "[conv2d b2sc]\ninput = b1r\nout_channels = 8\nkernel = 1\nstride = 2\nbias = false\n[batchnorm b2scb]\n"
    "[add b2add]\ninputs = b2b2, b2scb\n[relu b2r]\n[gap g]\n[linear fc]\nout_features = 4\n";

static int mapped_(const xb_model *m, const char *name) {
    for (int i = 0; i < xb_model_n_mapped(m); i++) {
        const char *nm;
        xb_model_mapped_info(m, i, &nm, NULL, NULL, NULL);
        if (!strcmp(nm, name)) return i;
    }
    fail_msg("no mapped layer %s", name);
    return -1;
}

static void test_groups(void **state) {
    (void)state;
    xb_model *m;
    assert_int_equal(xb_model_load_text(res_cfg, sizeof res_cfg - 1, "r.cfg", 1, &m), XB_OK);
    for (int skip = 0; skip < 2; skip++) {
        xb_prune_groups gs;
        assert_int_equal(xb_prune_groups_find(m, skip, &gs), XB_OK);
        assert_int_equal(gs.n, 4); /* {stem, b1c2}, {b1c1}, {b2c1}, {b2c2, b2sc} */
        int seen = 0;
        for (int k = 0; k < gs.n; k++) {
            const xb_prune_group *g = &gs.g[k];
            const char *nm;
            xb_model_mapped_info(m, g->conv[0], &nm, NULL, NULL, NULL);
            if (!strcmp(nm, "stem")) {
                assert_int_equal(g->n_conv, 2);
                assert_int_equal(g->conv[1], mapped_(m, "b1c2"));
                assert_int_equal(g->n_cons, 3); /* b1c1, b2c1, b2sc read the stream */
                assert_int_equal(g->n_obs, 2);  /* sr, b1r */
                assert_int_equal(g->frozen, skip ? XB_GROUP_RESIDUAL : XB_GROUP_PRUNABLE);
                seen |= 1;
            } else if (!strcmp(nm, "b2c2")) {
                assert_int_equal(g->n_conv, 2);
                assert_int_equal(g->conv[1], mapped_(m, "b2sc"));
                assert_int_equal(g->n_cons, 1); /* fc through gap */
                assert_int_equal(g->channels, 8);
                assert_int_equal(g->frozen, skip ? XB_GROUP_RESIDUAL : XB_GROUP_PRUNABLE);
                seen |= 2;
            } else {
                assert_int_equal(g->n_conv, 1);
                assert_int_equal(g->n_obs, 1);
                assert_int_equal(g->frozen, XB_GROUP_PRUNABLE);
                seen |= 4;
            }
        }
        assert_int_equal(seen, 7);
        /* MACs of producers and readers: b1c1's group is b1c1 and b1c2 */
        xb_prune_groups_free(&gs);
    }
    xb_model_free(m);
    /* resnet20: option-A shortcuts freeze every stage's stream; the blocks' inner channels are prunable */
    assert_int_equal(xb_model_load("resnet20", 1, &m), XB_OK);
    xb_prune_groups gs;
    assert_int_equal(xb_prune_groups_find(m, 0, &gs), XB_OK);
    int prunable = 0, frozen = 0;
    for (int k = 0; k < gs.n; k++) {
        const char *nm;
        xb_model_mapped_info(m, gs.g[k].conv[0], &nm, NULL, NULL, NULL);
        if (gs.g[k].frozen) {
            assert_int_equal(gs.g[k].frozen, XB_GROUP_SHORTCUT);
            frozen++;
        } else {
            assert_non_null(strstr(nm, ".conv1"));
            prunable++;
        }
    }
    assert_int_equal(prunable, 9);
    assert_int_equal(frozen, 3);
    xb_prune_groups_free(&gs);
    xb_model_free(m);
}

/* every group of the residual network pruned at once, its stream groups alike in every producer */
static void test_residual_consistent(void **state) {
    (void)state;
    xb_model *m;
    assert_int_equal(xb_model_load_text(res_cfg, sizeof res_cfg - 1, "r.cfg", 1, &m), XB_OK);
    const int nm = xb_model_n_mapped(m);
    int **keep = calloc((size_t)nm, sizeof *keep), *nk = calloc((size_t)nm, sizeof *nk);
    xb_prune_groups gs;
    assert_int_equal(xb_prune_groups_find(m, 0, &gs), XB_OK);
    xb_rng r;
    xb_rng_seed(&r, 4, "keep");
    for (int k = 0; k < gs.n; k++) {
        const int c = gs.g[k].channels, n = c / 2 + (int)xb_rng_below(&r, 2);
        int *sub = subset_(&r, c, n);
        for (int q = 0; q < gs.g[k].n_conv; q++) {
            keep[gs.g[k].conv[q]] = malloc(sizeof(int) * (size_t)n);
            memcpy(keep[gs.g[k].conv[q]], sub, sizeof(int) * (size_t)n);
            nk[gs.g[k].conv[q]] = n;
        }
        free(sub);
    }
    xb_prune_groups_free(&gs);
    xb_model_free(m);
    compare_(res_cfg, keep, nk, 5, 1e-5);
    for (int i = 0; i < nm; i++) free(keep[i]);
    free(keep); free(nk);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vgg),
        cmocka_unit_test(test_resnet20),
        cmocka_unit_test(test_checkpoint),
        cmocka_unit_test(test_groups),
        cmocka_unit_test(test_residual_consistent),

    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
