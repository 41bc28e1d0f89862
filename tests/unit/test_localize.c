/* Localization: class activation maps read in the patient's terms (orientation, side,
 * bilateral, bands, retrocardiac, the peak), and the words a finding's rule names. */
#include <math.h>
#include <string.h>

#include "radraft/localize.h"
#include "rdtest.h"

/* A 7 x 7 map, 0 everywhere but `v` at the listed cells (row, column pairs). */
static void map_with(float *m, const int *cells, int n, float v)
{
    for (int i = 0; i < 49; i++)
        m[i] = 0.0f;
    for (int k = 0; k < n; k++)
        m[cells[2 * k] * 7 + cells[2 * k + 1]] = v;
}

RD_TEST(orientation_from_dicom)
{
    rd_orientation o;
    rd_orientation_from_dicom("L\\F", "PA", &o);
    CHECK(o.known && !o.mirror && !o.flip && !o.transpose);
    rd_orientation_from_dicom("R\\F", "AP", &o);
    CHECK(o.known && o.mirror && !o.flip && !o.transpose);
    rd_orientation_from_dicom("L\\H", "", &o);
    CHECK(o.known && !o.mirror && o.flip);
    rd_orientation_from_dicom("F\\L", NULL, &o);
    CHECK(o.known && o.transpose && !o.mirror && !o.flip);
    rd_orientation_from_dicom("H\\R", NULL, &o);
    CHECK(o.known && o.transpose && o.mirror && o.flip);
    /* Oblique values: the first letter leads. */
    rd_orientation_from_dicom("LP\\FR", NULL, &o);
    CHECK(o.known && !o.mirror && !o.flip && !o.transpose);
    /* A lateral orientation, a broken value: no side. */
    rd_orientation_from_dicom("P\\F", "LL", &o);
    CHECK(!o.known);
    rd_orientation_from_dicom("A\\F", "", &o);
    CHECK(!o.known);
    rd_orientation_from_dicom("X", "PA", &o);
    CHECK(!o.known);
    rd_orientation_from_dicom("L", "PA", &o);
    CHECK(!o.known);
    /* No Patient Orientation: the view decides. */
    rd_orientation_from_dicom("", "LL", &o);
    CHECK(!o.known);
    rd_orientation_from_dicom(NULL, "LATERAL", &o);
    CHECK(!o.known);
    rd_orientation_from_dicom("", "AP", &o);
    CHECK(o.known && !o.mirror && !o.flip && !o.transpose);
    rd_orientation_from_dicom(NULL, NULL, &o);
    CHECK(o.known && !o.mirror);
    CHECK(o.rule && o.rule[0]);
}

/* Column 0 is the patient's right on a standard display: evidence on the viewer's left is
 * the patient's right. */
RD_TEST(side_follows_radiographic_convention)
{
    float m[49];
    rd_orientation std_o, mir;
    rd_location l;
    static const int right_upper[] = {1, 1};
    rd_orientation_standard(&std_o);
    rd_orientation_from_dicom("R\\F", "PA", &mir);
    map_with(m, right_upper, 1, 2.0f);
    REQUIRE_OK(rd_localize_map(m, 7, 7, &std_o, &l, NULL), NULL);
    CHECK_EQ_INT(l.side, RD_SIDE_RIGHT);
    CHECK_EQ_INT(l.band[RD_SIDE_RIGHT], RD_ZONE_UPPER);
    CHECK_EQ_INT(l.band[RD_SIDE_LEFT], RD_ZONE_NONE);
    CHECK_NEAR(l.right_share, 1.0, 1e-12);
    CHECK_NEAR(l.centroid_left[RD_SIDE_RIGHT], 1.5 / 7, 1e-12);
    CHECK_NEAR(l.centroid_feet[RD_SIDE_RIGHT], 1.5 / 7, 1e-12);
    CHECK_EQ_INT(l.peak_row, 1);
    CHECK_EQ_INT(l.peak_col, 1);
    CHECK_NEAR(l.peak_x, 1.5 / 7, 1e-12);
    CHECK_NEAR(l.peak_y, 1.5 / 7, 1e-12);
    /* The same pixels marked mirrored: the patient's left. */
    REQUIRE_OK(rd_localize_map(m, 7, 7, &mir, &l, NULL), NULL);
    CHECK_EQ_INT(l.side, RD_SIDE_LEFT);
    CHECK_EQ_INT(l.band[RD_SIDE_LEFT], RD_ZONE_UPPER);
    /* The peak is where it is stored, whatever the orientation. */
    CHECK_NEAR(l.peak_x, 1.5 / 7, 1e-12);
    /* Flipped upside down: the lower band. */
    rd_orientation flip;
    rd_orientation_from_dicom("L\\H", "PA", &flip);
    REQUIRE_OK(rd_localize_map(m, 7, 7, &flip, &l, NULL), NULL);
    CHECK_EQ_INT(l.side, RD_SIDE_RIGHT);
    CHECK_EQ_INT(l.band[RD_SIDE_RIGHT], RD_ZONE_LOWER);
    /* Transposed (columns toward the feet, rows toward the patient's left): row 1 is near
     * the patient's right edge, column 5 low in the chest. */
    static const int cell[] = {1, 5};
    rd_orientation tr;
    rd_orientation_from_dicom("F\\L", NULL, &tr);
    map_with(m, cell, 1, 1.0f);
    REQUIRE_OK(rd_localize_map(m, 7, 7, &tr, &l, NULL), NULL);
    CHECK_EQ_INT(l.side, RD_SIDE_RIGHT);
    CHECK_EQ_INT(l.band[RD_SIDE_RIGHT], RD_ZONE_LOWER);
    /* An unknown orientation names no side but keeps the peak. */
    rd_orientation lat;
    rd_orientation_from_dicom("P\\F", "LL", &lat);
    REQUIRE_OK(rd_localize_map(m, 7, 7, &lat, &l, NULL), NULL);
    CHECK_EQ_INT(l.side, RD_SIDE_NONE);
    CHECK_EQ_INT(l.peak_col, 5);
}

RD_TEST(bilateral_midline_and_flat)
{
    float m[49];
    rd_orientation o;
    rd_location l;
    rd_orientation_standard(&o);
    /* Equal evidence in both lower zones: bilateral, lower. */
    static const int both[] = {5, 1, 5, 5};
    map_with(m, both, 2, 1.0f);
    REQUIRE_OK(rd_localize_map(m, 7, 7, &o, &l, NULL), NULL);
    CHECK_EQ_INT(l.side, RD_SIDE_BILATERAL);
    CHECK_EQ_INT(l.band[RD_SIDE_BILATERAL], RD_ZONE_LOWER);
    CHECK_NEAR(l.right_share, 0.5, 1e-12);
    /* The smaller side at 0.5 of the larger is still both; below, the larger side. The hot
     * region starts half-way between min (0) and max (1): values 0.5 + x count x. */
    m[5 * 7 + 5] = 0.5f + 0.25f; /* left: 0.25 against the right's 0.5 */
    REQUIRE_OK(rd_localize_map(m, 7, 7, &o, &l, NULL), NULL);
    CHECK_EQ_INT(l.side, RD_SIDE_BILATERAL);
    m[5 * 7 + 5] = 0.5f + 0.2f;
    REQUIRE_OK(rd_localize_map(m, 7, 7, &o, &l, NULL), NULL);
    CHECK_EQ_INT(l.side, RD_SIDE_RIGHT);
    /* The map's level does not move the answer: the same shape shifted up. */
    for (int i = 0; i < 49; i++)
        m[i] += 7.0f;
    REQUIRE_OK(rd_localize_map(m, 7, 7, &o, &l, NULL), NULL);
    CHECK_EQ_INT(l.side, RD_SIDE_RIGHT);
    /* Only the midline column: half to each side, bilateral. */
    static const int mid[] = {3, 3};
    map_with(m, mid, 1, 1.0f);
    REQUIRE_OK(rd_localize_map(m, 7, 7, &o, &l, NULL), NULL);
    CHECK_EQ_INT(l.side, RD_SIDE_BILATERAL);
    CHECK_EQ_INT(l.band[RD_SIDE_BILATERAL], RD_ZONE_MIDDLE);
    /* A flat map says nothing. */
    for (int i = 0; i < 49; i++)
        m[i] = 0.3f;
    REQUIRE_OK(rd_localize_map(m, 7, 7, &o, &l, NULL), NULL);
    CHECK_EQ_INT(l.side, RD_SIDE_NONE);
    CHECK_EQ_INT(l.peak_row, 0);
    CHECK_EQ_INT(l.peak_col, 0);
    /* Bad maps. */
    CHECK_EQ_INT(rd_localize_map(NULL, 7, 7, &o, &l, NULL), RD_E_INVALID);
    CHECK_EQ_INT(rd_localize_map(m, 0, 7, &o, &l, NULL), RD_E_INVALID);
    m[3] = NAN;
    CHECK_EQ_INT(rd_localize_map(m, 7, 7, &o, &l, NULL), RD_E_INVALID);
    m[3] = INFINITY;
    CHECK_EQ_INT(rd_localize_map(m, 7, 7, &o, &l, NULL), RD_E_INVALID);
}

RD_TEST(bands_and_retrocardiac)
{
    float m[49];
    rd_orientation o;
    rd_location l;
    rd_orientation_standard(&o);
    /* Row centres: 0.07 0.21 0.36 0.5 0.64 0.79 0.93 of the height. */
    static const rd_zone want[7] = {RD_ZONE_UPPER, RD_ZONE_UPPER, RD_ZONE_MIDDLE, RD_ZONE_MIDDLE,
                                    RD_ZONE_LOWER, RD_ZONE_LOWER, RD_ZONE_LOWER};
    for (int r = 0; r < 7; r++) {
        int cell[2] = {r, 6};
        map_with(m, cell, 1, 1.0f);
        REQUIRE_OK(rd_localize_map(m, 7, 7, &o, &l, NULL), NULL);
        CHECK_EQ_INT(l.side, RD_SIDE_LEFT);
        CHECK_MSG(l.band[RD_SIDE_LEFT] == want[r], "row %d: band %s", r,
                  rd_zone_name(l.band[RD_SIDE_LEFT]));
        CHECK(!l.retrocardiac);
    }
    /* Left, lower, next to the midline: behind the heart. */
    static const int retro[] = {5, 4};
    map_with(m, retro, 1, 1.0f);
    REQUIRE_OK(rd_localize_map(m, 7, 7, &o, &l, NULL), NULL);
    CHECK_EQ_INT(l.side, RD_SIDE_LEFT);
    CHECK(l.retrocardiac);
    /* The mirror image (patient's right) is never retrocardiac. */
    static const int right_medial[] = {5, 2};
    map_with(m, right_medial, 1, 1.0f);
    REQUIRE_OK(rd_localize_map(m, 7, 7, &o, &l, NULL), NULL);
    CHECK_EQ_INT(l.side, RD_SIDE_RIGHT);
    CHECK(!l.retrocardiac);
}

RD_TEST(location_names_by_rule)
{
    float m[49];
    rd_orientation o;
    rd_location l;
    rd_side side;
    rd_zone zone;
    rd_location_rule ptx = {1, 0, 1u << RD_ZONE_APICAL};
    rd_location_rule atel = {1, 1,
                             (1u << RD_ZONE_UPPER) | (1u << RD_ZONE_MIDDLE) |
                                 (1u << RD_ZONE_BASAL) | (1u << RD_ZONE_RETROCARDIAC)};
    rd_location_rule nodule = {
        1, 0, (1u << RD_ZONE_UPPER) | (1u << RD_ZONE_MIDDLE) | (1u << RD_ZONE_LOWER)};
    rd_location_rule none = {0, 0, 0};
    rd_orientation_standard(&o);
    static const int left_apex[] = {0, 5};
    map_with(m, left_apex, 1, 1.0f);
    REQUIRE_OK(rd_localize_map(m, 7, 7, &o, &l, NULL), NULL);
    rd_location_name(&l, &ptx, &side, &zone);
    CHECK(side == RD_SIDE_LEFT && zone == RD_ZONE_APICAL);
    rd_location_name(&l, &nodule, &side, &zone);
    CHECK(side == RD_SIDE_LEFT && zone == RD_ZONE_UPPER);
    rd_location_name(&l, &none, &side, &zone);
    CHECK(side == RD_SIDE_NONE && zone == RD_ZONE_NONE);
    rd_location_name(NULL, &ptx, &side, &zone);
    CHECK(side == RD_SIDE_NONE);
    /* A middle-zone pneumothorax names its side only. */
    static const int left_mid[] = {3, 5};
    map_with(m, left_mid, 1, 1.0f);
    REQUIRE_OK(rd_localize_map(m, 7, 7, &o, &l, NULL), NULL);
    rd_location_name(&l, &ptx, &side, &zone);
    CHECK(side == RD_SIDE_LEFT && zone == RD_ZONE_NONE);
    /* Both bases: atelectasis says both; a nodule, on one side only, names no side. */
    static const int bases[] = {5, 1, 5, 5, 6, 1};
    map_with(m, bases, 3, 1.0f);
    REQUIRE_OK(rd_localize_map(m, 7, 7, &o, &l, NULL), NULL);
    CHECK_EQ_INT(l.side, RD_SIDE_BILATERAL);
    rd_location_name(&l, &atel, &side, &zone);
    CHECK(side == RD_SIDE_BILATERAL && zone == RD_ZONE_BASAL);
    rd_location_name(&l, &nodule, &side, &zone);
    CHECK(side == RD_SIDE_NONE && zone == RD_ZONE_NONE);
    /* Behind the heart: retrocardiac for atelectasis, the lower zone for a nodule. */
    static const int retro[] = {5, 4};
    map_with(m, retro, 1, 1.0f);
    REQUIRE_OK(rd_localize_map(m, 7, 7, &o, &l, NULL), NULL);
    rd_location_name(&l, &atel, &side, &zone);
    CHECK(side == RD_SIDE_LEFT && zone == RD_ZONE_RETROCARDIAC);
    rd_location_name(&l, &nodule, &side, &zone);
    CHECK(side == RD_SIDE_LEFT && zone == RD_ZONE_LOWER);
}

RD_TEST(names_round_trip)
{
    for (int s = 1; s < RD_SIDE_COUNT; s++) {
        rd_side back;
        REQUIRE_OK(rd_side_from_name(rd_side_name((rd_side)s), &back, NULL), NULL);
        CHECK_EQ_INT(back, s);
    }
    for (int z = 1; z < RD_ZONE_COUNT; z++) {
        rd_zone back;
        REQUIRE_OK(rd_zone_from_name(rd_zone_name((rd_zone)z), &back, NULL), NULL);
        CHECK_EQ_INT(back, z);
    }
    rd_side s;
    CHECK_EQ_INT(rd_side_from_name("middle", &s, NULL), RD_E_INVALID);
    CHECK(rd_side_name(RD_SIDE_COUNT) == NULL);
    CHECK_STR(rd_side_name(RD_SIDE_NONE), "");
}

/* A heat map: image-sized, 0 outside the hot region, 1 at the peak cell's centre, and the
 * same for a map shifted by a constant. */
RD_TEST(heatmap_image_sized_and_scaled)
{
    float m[49];
    rd_image *hm = NULL, *hm2 = NULL;
    static const int cell[] = {2, 5};
    map_with(m, cell, 1, 3.0f);
    REQUIRE_OK(rd_localize_heatmap(m, 7, 7, 350, 280, &hm, NULL), NULL);
    CHECK_EQ_INT(hm->width, 350);
    CHECK_EQ_INT(hm->height, 280);
    /* The centre of cell (2, 5): x = 5.5 / 7 * 350 = 275, y = 2.5 / 7 * 280 = 100. */
    float peak = hm->data[100 * 350 + 275], far = hm->data[270 * 350 + 10], hi = 0;
    for (int i = 0; i < 350 * 280; i++) {
        CHECK(hm->data[i] >= 0.0f && hm->data[i] <= 1.0f);
        hi = hm->data[i] > hi ? hm->data[i] : hi;
    }
    CHECK_MSG(hi > 0.95f && hi <= 1.0f, "heat map maximum %g", hi);
    CHECK_MSG(peak > 0.95f, "peak %g", peak);
    CHECK_NEAR(far, 0.0, 1e-6);
    for (int i = 0; i < 49; i++)
        m[i] = m[i] * 0.5f - 4.0f;
    REQUIRE_OK(rd_localize_heatmap(m, 7, 7, 350, 280, &hm2, NULL), NULL);
    double d = 0;
    for (int i = 0; i < 350 * 280; i++)
        d = fmax(d, fabs(hm->data[i] - hm2->data[i]));
    CHECK_MSG(d < 1e-5, "heat maps of a scaled and shifted map differ by %g", d);
    rd_image_free(hm2);
    hm2 = NULL;
    /* Flat: all zero. */
    for (int i = 0; i < 49; i++)
        m[i] = 1.0f;
    REQUIRE_OK(rd_localize_heatmap(m, 7, 7, 20, 20, &hm2, NULL), NULL);
    for (int i = 0; i < 400; i++)
        CHECK(hm2->data[i] == 0.0f);
    rd_image_free(hm2);
    CHECK_EQ_INT(rd_localize_heatmap(NULL, 7, 7, 20, 20, &hm2, NULL), RD_E_INVALID);
    CHECK(hm2 == NULL);
    rd_image_free(hm);
}

RD_TEST_MAIN()
